"""The web mail's internal credential: how it sends as a user without her password.

The web mail sends through the server's own submission listener (so every policy of
that listener applies), but it keeps no user's password after login. It logs in with
SASL PLAIN (RFC 4616) as ``authzid`` = the user, ``authcid`` = :data:`AUTHCID` and,
as password, a per-installation secret: 256 random bits in
``<data_dir>/webmail-submission.secret`` (mode 0600, made by the first process that
needs it; worker processes and the listener share the data directory, so they share
the secret). The submission listener takes such a login only when all of these hold:

- the web mail is enabled (otherwise no process holds a secret and every login that
  names another identity gets ``535``);
- the connection comes from a loopback address (the web mail connects to its own
  server; a client elsewhere is refused before the secret is even compared, so it
  learns nothing about it);
- the authentication identity is :data:`AUTHCID` and the password is the secret
  (compared in constant time);
- the authorization identity is an existing user (its canonical name becomes the
  session's user, so ``verifyIdentity``, quotas, DKIM signing and the trace apply as
  for that user's own login).

Nothing is advertised: the mechanism is plain ``PLAIN``. A user who logs in with her
own password and names another authzid is refused (``535``) without her password
being checked.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from .storage.private_files import PRIVATE_FILE

AUTHCID = "mailet-mta.webmail"
SECRET_FILE = "webmail-submission.secret"


def load_or_create_secret(data_dir: str | os.PathLike) -> str:
    """The installation's secret, made on first use. Creation is atomic (written to a
    private temporary file, then hard-linked into place), so processes starting at
    once agree on one secret and none reads a half-written file."""
    path = Path(data_dir) / SECRET_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    tmp = path.with_name(f"{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass                        # another process made it first: use theirs
    finally:
        os.unlink(tmp)
    return _read(path)


def _read(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        os.chmod(path, PRIVATE_FILE)
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no usable secret; delete it and restart "
                         f"(a new one is made)")
    return secret


def is_loopback(ip: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


class WebmailCredential:
    """The secret the web mail presents, and the check the SMTP backend makes."""

    def __init__(self, secret: str):
        self._secret = secret

    def __repr__(self) -> str:
        return "WebmailCredential(<secret>)"

    @property
    def secret(self) -> str:
        """The password the web mail sends with :data:`AUTHCID`."""
        return self._secret

    def allows(self, authcid: str, password: str, client_ip: str) -> bool:
        """True when a login from ``client_ip`` is the web mail's own."""
        if not is_loopback(client_ip):
            return False
        same_id = hmac.compare_digest(authcid.encode(), AUTHCID.encode())
        same_secret = hmac.compare_digest(password.encode(), self._secret.encode())
        return same_id and same_secret

    @classmethod
    def of_data_dir(cls, data_dir: str | os.PathLike) -> WebmailCredential:
        return cls(load_or_create_secret(data_dir))
