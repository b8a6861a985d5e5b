"""Files and directories only the server's own user may read, whatever the umask.

The data directory holds password hashes and every message body; the configuration
may hold a gateway password. Everything the server and ``mailet-mta init`` create is
therefore made ``0700`` (directories) or ``0600`` (files) explicitly, not left to the
umask of whoever started the process: ``os.open``/``os.mkdir`` get the private mode
(a umask can only remove bits from it), and :func:`restrict_umask` covers files that
libraries create on their own (SQLite's ``-wal``/``-shm``, a log file).
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077


def restrict_umask() -> int:
    """Make every later file of this process private; returns the previous umask."""
    return os.umask(PRIVATE_UMASK)


def make_private_dir(path: str | os.PathLike) -> Path:
    """``mkdir -p`` where each directory created gets mode 0700; existing ones are kept."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR)
        except FileExistsError:
            pass      # made meanwhile by another thread or process
    return path


def open_private(path: str | os.PathLike, buffering: int = -1):
    """A new binary file opened for writing with mode 0600 (truncated if it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
    return os.fdopen(fd, "wb", buffering=buffering)


def create_private(path: str | os.PathLike) -> None:
    """Create an empty 0600 file unless ``path`` exists (SQLite then keeps its mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         PRIVATE_FILE))
    except FileExistsError:
        pass


def write_private(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (an existing file is narrowed to it)."""
    with open_private(path) as f:
        os.fchmod(f.fileno(), PRIVATE_FILE)
        f.write(text.encode())
