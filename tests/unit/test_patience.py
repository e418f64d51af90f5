from __future__ import annotations

import pytest

from pipeline.delivery.patience import Patience, duration_words
from pipeline.delivery.smtp import server_words
from pipeline.errors import ConfigError, RelayUnavailable
from pipeline.settings import parse_seconds


class Clock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_backoff_doubles_is_capped_and_stops_at_the_limit():
    c = Clock()
    p = Patience(60, where="the relay at mail.example.org:587", sleep=c.sleep, clock=lambda: c.now)
    with pytest.raises(RelayUnavailable) as info:
        while True:
            p.wait("ConnectionRefusedError")
    assert c.slept == [0.5, 1, 2, 4, 8, 15, 15, 14.5]  # the last wait ends at the limit, then one last try
    assert str(info.value) == ("the relay at mail.example.org:587 has not answered for 1 minute "
                               "(ConnectionRefusedError)")
    assert info.value.waited == 60 and not info.value.in_doubt


def test_an_answer_ends_the_streak():
    c = Clock()
    p = Patience(2, where="x", sleep=c.sleep, clock=lambda: c.now)
    p.wait("a")
    p.wait("a")
    p.ok()
    c.now += 10
    p.wait("b")  # a new streak: no error although 10 s passed since the first failure
    assert c.slept == [0.5, 1.0, 0.5]


def test_the_server_asked_wait_is_honoured_within_the_limit():
    c = Clock()
    p = Patience(120, where="x", sleep=c.sleep, clock=lambda: c.now)
    assert p.wait("429", at_least=30) == 30
    assert p.wait("429", at_least=500) == 90  # never past the limit


def test_no_patience_fails_at_the_first_failure():
    p = Patience(0, where="x", sleep=lambda s: pytest.fail("slept"))
    with pytest.raises(RelayUnavailable):
        p.wait("refused")


def test_words():
    assert [duration_words(s) for s in (120, 60, 5, 1, 90)] == [
        "2 minutes", "1 minute", "5 seconds", "1 second", "90 seconds"]
    assert server_words(550, b"5.1.1 <ann@example.org>: user unknown") == "550 5.1.1 <address>: user unknown"


@pytest.mark.parametrize(("text", "seconds"), [("120", 120), ("90s", 90), ("2m", 120), ("1h", 3600), ("0", 0)])
def test_patience_setting(text, seconds):
    assert parse_seconds(text, "PIPELINE_RELAY_PATIENCE") == seconds


@pytest.mark.parametrize("text", ["soon", "-1", "2d", "25h"])
def test_bad_patience_setting(text):
    with pytest.raises(ConfigError, match="PIPELINE_RELAY_PATIENCE"):
        parse_seconds(text, "PIPELINE_RELAY_PATIENCE")
