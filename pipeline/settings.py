"""One Settings object: explicit overrides > environment PIPELINE_* (and .env) > defaults."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import ConfigError

_ENV = {
    "database_url": "PIPELINE_DATABASE_URL",
    "delivery": "PIPELINE_DELIVERY",
    "outbox": "PIPELINE_OUTBOX",
    "public_dir": "PIPELINE_PUBLIC_DIR",
    "site_url": "PIPELINE_SITE_URL",
    "secret_key": "PIPELINE_SECRET_KEY",
    "content_dir": "PIPELINE_CONTENT_DIR",
    "schedules": "PIPELINE_SCHEDULES",
    "templates_dir": "PIPELINE_TEMPLATES_DIR",
    "smtp_url": "PIPELINE_SMTP_URL",
    "smtp_ca_file": "PIPELINE_SMTP_CA_FILE",
    "relay_patience": "PIPELINE_RELAY_PATIENCE",
    "sendgrid_api_key": "SENDGRID_API_KEY",
    "sendgrid_host": "PIPELINE_SENDGRID_HOST",
    "sendgrid_webhook_public_key": "PIPELINE_SENDGRID_WEBHOOK_PUBLIC_KEY",
    "sender": "PIPELINE_FROM",
    "postal_address": "PIPELINE_POSTAL_ADDRESS",
    "var_dir": "PIPELINE_VAR_DIR",
    "smtp_rate": "PIPELINE_SMTP_RATE",
    "sendgrid_tracking": "PIPELINE_SENDGRID_TRACKING",
    "web_rate_limits": "PIPELINE_WEB_RATE_LIMITS",
    "metrics": "PIPELINE_METRICS",
    "review_mode": "PIPELINE_REVIEW_MODE",
    "staff_2fa": "PIPELINE_STAFF_2FA",
    "fetch_allow_private": "PIPELINE_FETCH_ALLOW_PRIVATE",
}

DELIVERY_BACKENDS = ("file", "smtp", "sendgrid", "memory")


@dataclass(frozen=True, kw_only=True)
class Settings:
    database_url: str = "sqlite:///var/pipeline.db"
    delivery: str = "file"
    outbox: Path = Path("var/outbox")
    public_dir: Path = Path("public")
    site_url: str = "http://127.0.0.1:8000"
    secret_key: str = ""
    content_dir: Path = Path("content")
    schedules: Path = Path("schedules.yaml")
    templates_dir: Path = Path("templates")
    smtp_url: str = ""
    smtp_ca_file: Path | None = None  # a CA bundle to trust for the relay's TLS (a private CA)
    relay_patience: float = 120.0  # seconds a send waits for a relay or API that does not answer, then stops
    sendgrid_api_key: str = ""
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_webhook_public_key: str = ""
    sender: str = "MBC Digest <digest@example.org>"
    postal_address: str = "MBC Digest, 123 Example Street, Example City, EX 00000, USA"
    var_dir: Path = Path("var")
    smtp_rate: float = 0.0
    sendgrid_tracking: bool = False
    # Sign-up rate limits in the web app; only benchmarks turn them off (PIPELINE_WEB_RATE_LIMITS=off).
    web_rate_limits: bool = True
    # GET /metrics (Prometheus text format); off unless asked for, so nothing is exposed by default.
    metrics: bool = False
    # attested: a front-matter review counts for the exact text it was first seen with; staff: only approvals by
    # reviewer accounts count (recommended in production).
    review_mode: str = "attested"
    # Let outside-feed fetches reach private and loopback addresses: for tests with a local server only.
    fetch_allow_private: bool = False
    # A one-time code (TOTP) at staff login for reviewers and admins; "off" is for local trials only.
    staff_2fa: bool = True

    def __repr__(self) -> str:
        # Keys never reach logs or tracebacks.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("secret_key", "sendgrid_api_key", "smtp_url"):
            if shown[key]:
                shown[key] = "***"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @property
    def sender_domain(self) -> str:
        addr = self.sender.rsplit("<", 1)[-1].rstrip(">").strip()
        return addr.rsplit("@", 1)[-1] if "@" in addr else "localhost"

    def evolve(self, **changes) -> Settings:
        return replace(self, **changes)


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines; blank lines and # comments are ignored."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip().removeprefix("export ").strip()] = value
    return values


def load_settings(overrides: dict | None = None, *, environ: dict | None = None,
                  dotenv: Path | None = Path(".env"), ensure_secret: bool = True) -> Settings:
    """Build and validate Settings. ``overrides`` (e.g. CLI flags) win over the environment."""
    env = dict(read_dotenv(dotenv) if dotenv else {})
    env.update(os.environ if environ is None else environ)
    values: dict = {}
    for name, var in _ENV.items():
        if env.get(var, "") != "":
            values[name] = env[var]
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    values = _coerce(values)
    settings = Settings(**values)
    _validate(settings)
    if ensure_secret and not settings.secret_key:
        settings = settings.evolve(secret_key=_stored_secret(settings.var_dir))
    return settings


def _coerce(values: dict) -> dict:
    out = dict(values)
    for name in ("outbox", "public_dir", "content_dir", "schedules", "templates_dir", "var_dir", "smtp_ca_file"):
        if name in out:
            out[name] = Path(out[name])
    if "relay_patience" in out:
        out["relay_patience"] = parse_seconds(out["relay_patience"], "PIPELINE_RELAY_PATIENCE")
    if "smtp_rate" in out:
        try:
            out["smtp_rate"] = float(out["smtp_rate"])
        except ValueError:
            raise ConfigError("PIPELINE_SMTP_RATE: must be a number of messages per second, such as 10") from None
    for flag in ("sendgrid_tracking", "web_rate_limits", "metrics", "fetch_allow_private", "staff_2fa"):
        if flag in out and isinstance(out[flag], str):
            out[flag] = out[flag].strip().lower() in ("1", "true", "yes", "on")
    return out


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_seconds(value: object, name: str) -> float:
    """ "120", "120s", "2m" or "1h" -> seconds."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        unit = _UNITS.get(text[-1:], None)
        try:
            seconds = float(text[:-1] if unit else text) * (unit or 1)
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not a duration; use seconds (90) or 90s, 2m, 1h") from None
    if not 0 <= seconds <= 86400:
        raise ConfigError(f"{name}: {value!r} must be between 0 seconds and 24 hours")
    return seconds


def _validate(s: Settings) -> None:
    if s.delivery not in DELIVERY_BACKENDS:
        raise ConfigError(
            f"PIPELINE_DELIVERY: unknown backend {s.delivery!r}; use one of: file, smtp, sendgrid"
        )
    if s.delivery == "smtp" and not s.smtp_url:
        raise ConfigError("PIPELINE_SMTP_URL: required when PIPELINE_DELIVERY=smtp, e.g. smtp://user:pass@host:587?starttls=1")
    if s.smtp_ca_file is not None and not s.smtp_ca_file.is_file():
        raise ConfigError(f"PIPELINE_SMTP_CA_FILE: {s.smtp_ca_file} is not a file; give the PEM bundle of the CA "
                          "that signed the relay's certificate")
    if s.delivery == "sendgrid" and not s.sendgrid_api_key:
        raise ConfigError("SENDGRID_API_KEY: required when PIPELINE_DELIVERY=sendgrid")
    if s.review_mode not in ("attested", "staff"):
        raise ConfigError(f"PIPELINE_REVIEW_MODE: {s.review_mode!r} is not a review mode; use attested or staff")
    parts = urlsplit(s.site_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"PIPELINE_SITE_URL: {s.site_url!r} is not an http(s) URL, e.g. https://digest.example.org")
    if "@" not in s.sender:
        raise ConfigError("PIPELINE_FROM: needs an address, e.g. 'MBC Digest <digest@example.org>'")
    if not s.database_url.split(":", 1)[0].startswith(("sqlite", "postgresql")):
        raise ConfigError("PIPELINE_DATABASE_URL: use sqlite:///path.db or postgresql+psycopg://user@host/db")


def _stored_secret(var_dir: Path) -> str:
    path = var_dir / "secret_key"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)  # first writer wins if two processes start together
    except FileExistsError:
        pass
    tmp.unlink(missing_ok=True)
    return path.read_text(encoding="utf-8").strip()
