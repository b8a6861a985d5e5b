"""A user's folders as IMAP manages them: create, delete, rename (RFC 3501 §6.3.3–5),
the special-use folders every user gets (RFC 6154) and subscriptions (§6.3.6).

Names are str with ``/`` as the hierarchy delimiter; ``INBOX`` is stored as
``INBOX`` whatever its case. A folder row carries ``uid_validity`` (never one a folder
of this database had before, :func:`~.mailboxes.new_uid_validity`), so a folder
deleted and created again is a new folder to every client. Deleting a folder removes
its messages and tombstones; their blobs go when the sweep finds them unreferenced.
"""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from ..mailstore import SPECIAL_USE_FOLDERS, FolderExists, NoSuchFolder, canonical_folder
from . import schema
from .folder_changes import announce
from .mailboxes import _create_mailbox

__all__ = ["MAX_FOLDERS", "MAX_SUBSCRIPTIONS", "MAX_NAME", "check_name", "create_folder",
           "delete_folder", "rename_folder", "ensure_user_folders", "subscriptions",
           "set_subscribed"]

MAX_FOLDERS = 1000            # folders per user
MAX_SUBSCRIPTIONS = 1000      # subscribed names per user
MAX_NAME = 255                # characters of a folder name (the column's size)

_mb, _msg, _subs = schema.mailboxes, schema.messages, schema.subscriptions


def check_name(name: str) -> str:
    """The canonical form of a folder name; ValueError for one a client cannot name
    back: empty, an empty level (``a//b``, ``/a``, ``a/``), a control character, the
    LIST wildcards ``*`` and ``%``, or longer than :data:`MAX_NAME`."""
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"a folder name has 1 to {MAX_NAME} characters")
    if any(ord(c) < 0x20 or c == "\x7f" or c in "*%" for c in name):
        raise ValueError(f"{name!r}: a folder name has no control characters, * or %")
    if "" in name.split("/"):
        raise ValueError(f"{name!r}: every level of a folder name must be named")
    return canonical_folder(name)


def _superiors(name: str) -> list[str]:
    """``a``, ``a/b`` for ``a/b/c``."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _names(conn: Connection, user: str) -> dict[str, int]:
    return dict(conn.execute(select(_mb.c.name, _mb.c.id).where(_mb.c.user == user)).all())


def _box_id(conn: Connection, user: str, name: str) -> int | None:
    return conn.execute(select(_mb.c.id).where((_mb.c.user == user)
                                               & (_mb.c.name == name))).scalar()


def _check_room(conn: Connection, user: str, adding: int) -> None:
    count = conn.execute(select(func.count()).select_from(_mb)
                         .where(_mb.c.user == user)).scalar() or 0
    if count + adding > MAX_FOLDERS:
        raise ValueError(f"{user} has {count} folders; at most {MAX_FOLDERS} are kept")


def create_folder(conn: Connection, user: str, name: str, exclusive: bool = False,
                  special_use: str | None = None) -> int:
    """Create (user, name) and its missing superiors; → its mailbox id. With
    ``exclusive`` an existing one raises FolderExists."""
    name = check_name(name)
    found = _box_id(conn, user, name)
    if found is not None:
        if exclusive:
            raise FolderExists(f"{user} has a folder {name!r} already")
        return found
    have = _names(conn, user)
    missing = [n for n in _superiors(name) if n not in have]
    _check_room(conn, user, len(missing) + 1)
    for superior in missing:
        _create_mailbox(conn, user, superior)
    return _create_mailbox(conn, user, name, special_use)


def delete_folder(conn: Connection, user: str, name: str) -> int:
    """Delete (user, name) with its messages and tombstones; its inferiors stay.
    → the mailbox id it had. ValueError for INBOX, NoSuchFolder when missing."""
    name = check_name(name)
    if name == "INBOX":
        raise ValueError("INBOX cannot be deleted")
    box = _box_id(conn, user, name)
    if box is None:
        raise NoSuchFolder(f"{user} has no folder {name!r}")
    conn.execute(delete(_msg).where(_msg.c.mailbox_id == box))
    conn.execute(delete(schema.expunged).where(schema.expunged.c.mailbox_id == box))
    conn.execute(delete(_mb).where(_mb.c.id == box))
    announce(conn, box)
    return box


def rename_folder(conn: Connection, user: str, old: str, new: str) -> list[int]:
    """Rename ``old`` (and ``old/…``) to ``new`` (and ``new/…``), creating missing
    superiors of ``new``; INBOX's messages go to ``new`` and a fresh INBOX takes its
    place (its inferiors stay). → the mailbox ids renamed. NoSuchFolder,
    FolderExists or ValueError as :meth:`IMailStore.rename_folder` says."""
    old, new = check_name(old), check_name(new)
    if new == "INBOX":
        raise ValueError("a folder cannot be renamed to INBOX")
    have = _names(conn, user)
    if old not in have:
        raise NoSuchFolder(f"{user} has no folder {old!r}")
    if new == old or new.startswith(old + "/"):
        raise FolderExists(f"{new!r} is {old!r} or inside it")
    moves = {old: new}
    if old != "INBOX":
        moves.update({name: new + name[len(old):] for name in have
                      if name.startswith(old + "/")})
    taken = [target for target in moves.values() if target in have]
    if taken:
        raise FolderExists(f"{user} has a folder {taken[0]!r} already")
    missing = [n for n in _superiors(new) if n not in have]
    _check_room(conn, user, len(missing) + (1 if old == "INBOX" else 0))
    for superior in missing:
        _create_mailbox(conn, user, superior)
    for source, target in moves.items():
        conn.execute(update(_mb).where(_mb.c.id == have[source]).values(name=target))
        announce(conn, have[source])
    if old == "INBOX":
        _create_mailbox(conn, user, "INBOX")
    else:
        for source, target in moves.items():
            conn.execute(update(_subs).where((_subs.c.user == user) & (_subs.c.name == source))
                         .values(name=target))
    return [have[source] for source in moves]


def ensure_user_folders(conn: Connection, user: str) -> list[str]:
    """Create INBOX and the special-use folders that are missing, subscribed;
    → the names created."""
    have = _names(conn, user)
    wanted = [("INBOX", None), *SPECIAL_USE_FOLDERS]
    created = [name for name, _use in wanted if name not in have]
    for name, use in wanted:
        if name not in have:
            _create_mailbox(conn, user, name, use)
    if created:
        subscribed = subscriptions(conn, user)
        for name in created:
            if name not in subscribed:
                conn.execute(insert(_subs).values(user=user, name=name))
    return created


def subscriptions(conn: Connection, user: str) -> set[str]:
    """The names ``user`` subscribed."""
    return set(conn.execute(select(_subs.c.name).where(_subs.c.user == user)).scalars())


def set_subscribed(conn: Connection, user: str, name: str, on: bool) -> None:
    """Subscribe or unsubscribe ``name`` (which need not exist); ValueError past
    :data:`MAX_SUBSCRIPTIONS`."""
    name = check_name(name)
    where = (_subs.c.user == user) & (_subs.c.name == name)
    if not on:
        conn.execute(delete(_subs).where(where))
        return
    if conn.execute(select(_subs.c.name).where(where)).first() is not None:
        return
    count = conn.execute(select(func.count()).select_from(_subs)
                         .where(_subs.c.user == user)).scalar() or 0
    if count >= MAX_SUBSCRIPTIONS:
        raise ValueError(f"{user} has {count} subscriptions; at most "
                         f"{MAX_SUBSCRIPTIONS} are kept")
    conn.execute(insert(_subs).values(user=user, name=name))
