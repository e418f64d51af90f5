"""One-time codes (TOTP, RFC 6238) for a second factor: the only importer of pyotp."""

from __future__ import annotations

from datetime import datetime

import pyotp


def new_secret() -> str:
    return pyotp.random_base32()


def code_at(secret: str, at: datetime) -> str:
    return pyotp.TOTP(secret).at(at)


def verify(secret: str, code: str, *, at: datetime) -> bool:
    """True when ``code`` is the code for ``at``, or for the 30 seconds either side (clock drift)."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return False
    return pyotp.TOTP(secret).verify(code, for_time=at, valid_window=1)
