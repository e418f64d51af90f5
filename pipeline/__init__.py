"""mbc-pipeline: articles become feeds and email digests for people living with metastatic breast cancer."""

__version__ = "0.1.0"
