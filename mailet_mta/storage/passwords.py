"""Stored passwords: argon2id hashes in PHC string form (argon2-cffi).

Parameters: ``time_cost=2``, ``memory_cost=19 MiB`` (19456 KiB), ``parallelism=2`` —
the OWASP "m=19 MiB, t=2" argon2id profile with two lanes. Measured on the 2-core
reference machine: one verification takes about 21 ms (p=1 would take 34 ms; the
argon2-cffi default of 64 MiB/t=3/p=4 takes about 200 ms). Hashing and verifying are
blocking: call them on a thread (``Database.run_in_thread``), never on the reactor.

Hashes made with other parameters still verify; :func:`needs_rehash` tells a caller
that a successful login should store a fresh hash.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["hash_password", "verify_password", "needs_rehash", "dummy_verify",
           "TIME_COST", "MEMORY_COST", "PARALLELISM"]

TIME_COST = 2
MEMORY_COST = 19456          # KiB
PARALLELISM = 2

_HASHER = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST,
                         parallelism=PARALLELISM, hash_len=32, salt_len=16,
                         type=Type.ID)
_DUMMY_HASH: str | None = None


def hash_password(password: str) -> str:
    """A new argon2id PHC string for ``password`` (blocking, ~20 ms)."""
    if not isinstance(password, str) or password == "":
        raise ValueError("the password must be a non-empty string")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; False for any mismatch or bad hash."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than the current ones."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def dummy_verify(password: str) -> None:
    """Spend the time of one verification (for unknown users: no timing oracle)."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _HASHER.hash("dummy password for unknown users")
    verify_password(_DUMMY_HASH, password)
