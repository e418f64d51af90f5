"""Signed link tokens, each scoped to one subscriber and one purpose (invariant 4)."""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

PURPOSES = ("confirm", "preferences", "unsubscribe", "data")


class TokenError(ValueError):
    """A token that is forged, altered, expired or meant for something else."""


@dataclass(frozen=True, kw_only=True)
class TokenClaims:
    subscriber_id: int
    version: int
    purpose: str


class Signer:
    def __init__(self, secret_key: str):
        if not secret_key:
            raise ValueError("a secret key is required to sign links")
        self._serializers = {p: URLSafeTimedSerializer(secret_key, salt=f"mbc-pipeline/{p}") for p in PURPOSES}

    def sign(self, purpose: str, subscriber_id: int, version: int = 0) -> str:
        return self._serializers[purpose].dumps([subscriber_id, version])

    def verify(self, purpose: str, token: str, *, max_age: int | None = None) -> TokenClaims:
        """Check signature and purpose; ``max_age`` in seconds limits how old the token may be."""
        if purpose not in self._serializers or not isinstance(token, str) or len(token) > 512:
            raise TokenError("this link is not valid")
        try:
            value = self._serializers[purpose].loads(token, max_age=max_age)
        except SignatureExpired:
            raise TokenError("this link has expired") from None
        except BadSignature:
            raise TokenError("this link is not valid") from None
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise TokenError("this link is not valid")
        return TokenClaims(subscriber_id=value[0], version=value[1], purpose=purpose)
