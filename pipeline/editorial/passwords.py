"""Password hashing with argon2id: the only importer of argon2."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 1024
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


def weakness(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"is {len(password)} characters long; use at least {MIN_LENGTH} (a few unrelated words work well)"
    if len(password) > MAX_LENGTH:
        return f"is longer than {MAX_LENGTH} characters"
    if password.strip() != password:
        return "starts or ends with a space; remove it"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored: str, password: str) -> tuple[bool, bool]:
    """(matches, should be rehashed because the parameters changed)."""
    if len(password) > MAX_LENGTH:
        return False, False
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False, False
    return True, _hasher.check_needs_rehash(stored)
