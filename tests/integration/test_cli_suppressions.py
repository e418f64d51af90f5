from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.store.engine import make_engine
from pipeline.subscribers import repository
from tests.support.db import AT, add_subscribers


@pytest.fixture
def env(tmp_path, monkeypatch, db_url):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIPELINE_DATABASE_URL", db_url)
    monkeypatch.setenv("PIPELINE_SECRET_KEY", "test-secret")
    engine = make_engine(db_url)
    add_subscribers(engine, 3)
    yield engine
    engine.dispose()


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_add_list_remove(env, caplog):
    caplog.set_level(logging.INFO)
    r = run("suppressions", "add", "Reader2@Example.org", "--reason", "deceased")
    assert r.exit_code == 0 and r.output.strip() == "suppressed"
    assert run("suppressions", "add", "reader2@example.org").output.strip() == "already suppressed"
    listed = run("suppressions", "list").output.splitlines()
    assert len(listed) == 1 and listed[0].startswith("reader2@example.org\tdeceased\tmanual\t")
    with env.connect() as conn:
        assert repository.still_mailable_ids(conn, [1, 2, 3], at=AT) == {1, 3}
    assert run("suppressions", "remove", "reader2@example.org").output.strip() == "removed"
    assert run("suppressions", "remove", "reader2@example.org").output.strip() == "not on the list"
    assert run("suppressions", "list").output == ""
    assert "example.org" not in caplog.text


def test_bad_address_is_a_user_error(env):
    r = run("suppressions", "add", "not-an-address")
    assert r.exit_code == 1 and "EMAIL" in r.output


@pytest.mark.parametrize("args", [["suppressions", "--help"], ["suppressions", "add", "--help"],
                                  ["suppressions", "list", "--help"], ["suppressions", "remove", "--help"]])
def test_help(args, env):
    assert run(*args).exit_code == 0
