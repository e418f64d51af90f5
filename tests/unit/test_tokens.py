from __future__ import annotations

from datetime import UTC, datetime

import pytest
from itsdangerous.timed import TimestampSigner

from pipeline.subscribers.tokens import Signer, TokenError

AT = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize("subscriber_id", [1, 42, 99_999, 10**12, 123456789012345])
@pytest.mark.parametrize("purpose", ["unsubscribe", "preferences"])
def test_signing_at_a_time_matches_itsdangerous(monkeypatch, purpose, subscriber_id):
    signer = Signer("k" * 40)
    fast = signer.sign(purpose, subscriber_id, 3, at=AT)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(AT.timestamp()))
    assert fast == signer.sign(purpose, subscriber_id, 3)
    claims = signer.verify(purpose, fast)
    assert (claims.subscriber_id, claims.version) == (subscriber_id, 3)


def test_token_is_scoped_to_its_purpose():
    signer = Signer("k" * 40)
    token = signer.sign("unsubscribe", 5, at=AT)
    with pytest.raises(TokenError):
        signer.verify("preferences", token)
