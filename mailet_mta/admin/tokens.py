"""Bearer tokens of the admin HTTP API.

A token is 256 random bits (``secrets.token_urlsafe(32)`` after the prefix ``mwa_``),
printed once when created; the database keeps only its SHA-256 and the name given to
it, which the server logs with every change made with the token. A token found by its
hash is compared again in constant time before it is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

from sqlalchemy import delete, insert, select

from ..storage import schema
from .errors import Conflict, Invalid, NotFound

PREFIX = "mwa_"
MAX_TOKEN_LENGTH = 128           # longer Authorization values are refused unread
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_T = schema.webadmin_tokens


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise Invalid(f"{name!r} is not a token name: 1 to 64 letters, digits and . _ @ -, "
                      f"starting with a letter or digit")
    return name


def create_token(conn, _config, name: str) -> str:
    """A new token called ``name``; → the token itself (the only time it is known)."""
    check_name(name)
    if conn.execute(select(_T.c.name).where(_T.c.name == name)).first() is not None:
        raise Conflict(f"a token named {name} exists already; revoke it first "
                       f"(mailet-mta webadmin token revoke {name}) or choose another name")
    token = new_token()
    conn.execute(insert(_T).values(name=name, token_hash=hash_token(token),
                                   created=time.time()))
    return token


def list_tokens(conn, _config=None) -> list[dict]:
    return [{"name": name, "created": created} for name, created in
            conn.execute(select(_T.c.name, _T.c.created).order_by(_T.c.name))]


def revoke_token(conn, _config, name: str) -> str:
    if conn.execute(delete(_T).where(_T.c.name == name)).rowcount == 0:
        raise NotFound(f"no token named {name!r} (see: mailet-mta webadmin token list)")
    return name


def token_owner(conn, token: str) -> str | None:
    """The name of the token ``token``, or None when it is unknown or revoked."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = hash_token(token)
    row = conn.execute(select(_T.c.name, _T.c.token_hash)
                       .where(_T.c.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return row.name
