from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings


def test_defaults_are_the_embedded_ones(tmp_path):
    s = load_settings(environ={}, dotenv=None, ensure_secret=False)
    assert s.database_url == "sqlite:///var/pipeline.db"
    assert s.delivery == "file" and s.outbox == Path("var/outbox") and s.public_dir == Path("public")
    assert s.site_url == "http://127.0.0.1:8000"
    assert s.relay_patience == 120 and s.smtp_ca_file is None


def test_relay_settings(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = load_settings(environ={"PIPELINE_RELAY_PATIENCE": "5s", "PIPELINE_SMTP_CA_FILE": str(ca)}, dotenv=None,
                      ensure_secret=False)
    assert s.relay_patience == 5 and s.smtp_ca_file == ca


def test_overrides_beat_environment_which_beats_dotenv(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nPIPELINE_SITE_URL=https://dotenv.example.org\nPIPELINE_PUBLIC_DIR='from-dotenv'\n")
    s = load_settings(environ={"PIPELINE_SITE_URL": "https://env.example.org"}, dotenv=env_file, ensure_secret=False)
    assert s.site_url == "https://env.example.org"
    assert s.public_dir == Path("from-dotenv")
    s = load_settings({"site_url": "https://flag.example.org"}, environ={"PIPELINE_SITE_URL": "https://env.example.org"},
                      dotenv=env_file, ensure_secret=False)
    assert s.site_url == "https://flag.example.org"


@pytest.mark.parametrize(("env", "needle"), [
    ({"PIPELINE_DELIVERY": "pigeon"}, "PIPELINE_DELIVERY"),
    ({"PIPELINE_DELIVERY": "smtp"}, "PIPELINE_SMTP_URL"),
    ({"PIPELINE_DELIVERY": "sendgrid"}, "SENDGRID_API_KEY"),
    ({"PIPELINE_SITE_URL": "digest.example.org"}, "PIPELINE_SITE_URL"),
    ({"PIPELINE_DATABASE_URL": "mysql://x"}, "PIPELINE_DATABASE_URL"),
    ({"PIPELINE_SMTP_RATE": "fast"}, "PIPELINE_SMTP_RATE"),
    ({"PIPELINE_RELAY_PATIENCE": "a while"}, "PIPELINE_RELAY_PATIENCE"),
    ({"PIPELINE_SMTP_CA_FILE": "/nonexistent/private-ca.pem"}, "PIPELINE_SMTP_CA_FILE"),
])
def test_bad_settings_name_the_variable(env, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(environ=env, dotenv=None, ensure_secret=False)


def test_secret_is_made_once_and_kept(tmp_path):
    env = {"PIPELINE_VAR_DIR": str(tmp_path / "var")}
    first = load_settings(environ=env, dotenv=None).secret_key
    second = load_settings(environ=env, dotenv=None).secret_key
    assert len(first) >= 40 and first == second
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0


def test_secrets_never_show_in_repr():
    s = load_settings(environ={"SENDGRID_API_KEY": "SG.very-secret", "PIPELINE_SECRET_KEY": "k" * 40,
                               "PIPELINE_SMTP_URL": "smtp://u:hunter2@127.0.0.1:25"}, dotenv=None)
    text = repr(s)
    assert "very-secret" not in text and "k" * 40 not in text and "hunter2" not in text
