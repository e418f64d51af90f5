"""Feed and item ids stay the same whatever the site's address becomes: built for real through `pipeline feeds
build` (the namespace kept in the database) and read back with feedparser."""

from __future__ import annotations

import json
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from pipeline.cli import cli
from pipeline.store.engine import make_engine
from pipeline.store.tables import site_keys
from tests.conftest import FIXTURES, ROOT

AT = "2026-11-25T12:00:00+00:00"


@pytest.fixture
def env(tmp_path, monkeypatch, db_url):
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "PIPELINE_DATABASE_URL": db_url, "PIPELINE_SECRET_KEY": "test-secret", "PIPELINE_VAR_DIR": str(tmp_path / "var"),
        "PIPELINE_CONTENT_DIR": str(FIXTURES / "content"), "PIPELINE_TEMPLATES_DIR": str(ROOT / "templates"),
        "PIPELINE_SCHEDULES": str(ROOT / "schedules.yaml"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PIPELINE_SITE_URL", raising=False)
    return db_url


def build(monkeypatch, public: Path, site_url: str | None) -> None:
    monkeypatch.setenv("PIPELINE_PUBLIC_DIR", str(public))
    if site_url is None:
        monkeypatch.delenv("PIPELINE_SITE_URL", raising=False)
    else:
        monkeypatch.setenv("PIPELINE_SITE_URL", site_url)
    result = CliRunner().invoke(cli, ["feeds", "build", "--at", AT], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def ids(public: Path) -> dict[str, object]:
    """file -> (feed id or None, {article slug: item id}, title), from every feed the build wrote."""
    out = {}
    for path in sorted((public / "feeds").iterdir()):
        if path.suffix == ".json":
            data = json.loads(path.read_bytes())
            items = {i["url"].rsplit("/", 1)[1]: i["id"] for i in data["items"]}
            out[path.name] = (None, items, data["title"])
        else:
            parsed = feedparser.parse(path.read_bytes())
            assert parsed.bozo == 0, parsed.get("bozo_exception")
            items = {e.link.rsplit("/", 1)[1]: e.id for e in parsed.entries}
            out[path.name] = (parsed.feed.get("id"), items, parsed.feed.title)
    return out


def test_ids_survive_a_new_site_url_and_name_no_ip_address(env, monkeypatch, tmp_path):
    build(monkeypatch, tmp_path / "loopback", None)  # the default, http://127.0.0.1:8000
    build(monkeypatch, tmp_path / "public", "https://mbc.example.org")
    before, after = ids(tmp_path / "loopback"), ids(tmp_path / "public")
    assert before.keys() == after.keys() and len(before) == 24
    for name in before:
        assert before[name][:2] == after[name][:2], name  # every feed id and item id, unchanged
    every_id = [i for _feed, items, _title in after.values() for i in items.values()]
    every_id += [feed for feed, _items, _title in after.values() if feed]
    assert every_id and all(i.startswith("urn:uuid:") for i in every_id)
    assert not any("127.0.0.1" in i or "example.org" in i for i in every_id)
    # Each article has one id in every feed it is in, and different articles have different ids.
    by_slug: dict[str, set[str]] = {}
    for _feed, items, _title in after.values():
        for slug, item_id in items.items():
            by_slug.setdefault(slug, set()).add(item_id)
    assert all(len(found) == 1 for found in by_slug.values())
    assert len({next(iter(found)) for found in by_slug.values()}) == len(by_slug)
    # A reader lists the three versions of a feed under three titles.
    assert [after[f][2] for f in ("all.rss.xml", "all.atom.xml", "all.json")] == [
        "MBC Digest (RSS)", "MBC Digest (Atom)", "MBC Digest (JSON Feed)"]
    engine = make_engine(env)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(site_keys)).scalar_one() == 1
    finally:
        engine.dispose()


def test_another_installation_has_ids_of_its_own(env, monkeypatch, tmp_path):
    build(monkeypatch, tmp_path / "one", "https://mbc.example.org")
    monkeypatch.setenv("PIPELINE_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    build(monkeypatch, tmp_path / "two", "https://mbc.example.org")
    one, two = ids(tmp_path / "one")["all.atom.xml"], ids(tmp_path / "two")["all.atom.xml"]
    assert one[1].keys() == two[1].keys() and set(one[1].values()).isdisjoint(two[1].values())
    assert one[0] != two[0]
