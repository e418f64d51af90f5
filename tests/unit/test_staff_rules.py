"""Pure rules of the workbench: the word diff, the lockout arithmetic and the session lifetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from pipeline.editorial import sessions, signin
from pipeline.web.staff.reviewing import word_diff

T = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


def test_word_diff_marks_a_changed_phrase_once():
    runs = word_diff(["Tiredness is common. Short rests can help."],
                     ["Tiredness is common. A short rest of 20 minutes can help."])
    assert runs == [("", "Tiredness is common. "), ("del", "Short rests"), ("ins", "A short rest of 20 minutes"),
                    ("", " can help.")]
    assert word_diff(["same text"], ["same text"]) == [("", "same text")]
    assert word_diff([], ["all new"]) == [("ins", "all new")]


def test_word_diff_keeps_every_word_of_both_sides():
    old, new = ["one two three four five"], ["zero two three five six"]
    runs = word_diff(old, new)
    assert "".join(t for k, t in runs if k != "ins") == old[0]
    assert "".join(t for k, t in runs if k != "del") == new[0]


def _locked(times: list[datetime], at: datetime) -> bool:
    class Conn:
        def execute(self, _query):
            return [SimpleNamespace(at=t) for t in sorted(times) if t > at - signin.WINDOW - signin.LOCK]

    return signin._locked(Conn(), "key", at)


def test_ten_failures_lock_for_fifteen_minutes_from_the_tenth():
    burst = [T + timedelta(minutes=i) for i in range(10)]  # the 10th at T+9
    assert not _locked(burst[:9], T + timedelta(minutes=9))
    assert _locked(burst, T + timedelta(minutes=9))
    assert _locked(burst, T + timedelta(minutes=23, seconds=59))
    assert not _locked(burst, T + timedelta(minutes=24))


def test_failures_spread_over_more_than_fifteen_minutes_do_not_lock():
    spread = [T + timedelta(minutes=2 * i) for i in range(10)]  # 18 minutes from first to tenth
    assert not _locked(spread, T + timedelta(minutes=18))


def test_session_lifetimes():
    row = SimpleNamespace(stage="full", stamp="s", created_at=T, last_seen_at=T)
    account = SimpleNamespace(disabled=False)
    assert sessions._alive(row, account, "s", T + sessions.IDLE)
    assert not sessions._alive(row, account, "s", T + sessions.IDLE + timedelta(seconds=1))
    used = SimpleNamespace(stage="full", stamp="s", created_at=T, last_seen_at=T + timedelta(days=7))
    assert sessions._alive(used, account, "s", T + timedelta(days=7))
    assert not sessions._alive(used, account, "s", T + timedelta(days=7, seconds=1))
    assert not sessions._alive(row, account, "changed", T)
    assert not sessions._alive(row, SimpleNamespace(disabled=True), "s", T)
    half = SimpleNamespace(stage="code", stamp="s", created_at=T, last_seen_at=T)
    assert not sessions._alive(half, account, "s", T + sessions.STEP + timedelta(seconds=1))
