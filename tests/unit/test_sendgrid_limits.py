"""The limits copied into pipeline.delivery.sendgrid_spec agree with SendGrid's published Mail Send spec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.delivery import sendgrid_spec as sg

SPEC = Path(__file__).resolve().parents[3] / "shared" / "reference" / "sendgrid" / "tsg_mail_v3.yaml"


@pytest.fixture(scope="module")
def body_schema():
    if not SPEC.is_file():
        pytest.skip(f"SendGrid spec not present at {SPEC}")
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return spec["components"]["requestBodies"]["PostMailSend"]["content"]["application/json"]["schema"]


def test_personalization_and_category_limits_match_the_spec(body_schema):
    props = body_schema["properties"]
    assert props["personalizations"]["maxItems"] == sg.MAX_PERSONALIZATIONS
    assert props["categories"]["maxItems"] == sg.MAX_CATEGORIES
    assert props["categories"]["items"]["maxLength"] == sg.MAX_CATEGORY_LENGTH
    item = props["personalizations"]["items"]["properties"]
    assert "10,000 bytes per personalization" in item["substitutions"]["description"]
    assert sg.MAX_SUBSTITUTION_BYTES == 10_000
    assert "10,000 bytes" in item["custom_args"]["description"]
    assert sg.MAX_CUSTOM_ARGS_BYTES == 10_000


def test_forbidden_headers_match_the_spec(body_schema):
    for where in (body_schema["properties"]["headers"],
                  body_schema["properties"]["personalizations"]["items"]["properties"]["headers"]):
        listed = where["description"].split("following headers:", 1)[1]
        names = {n.lower() for n in re.findall(r"`([^`]+)`", listed)}
        assert names == set(sg.FORBIDDEN_HEADERS)
