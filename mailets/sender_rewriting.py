"""SRS, the Sender Rewriting Scheme: envelope senders of forwarded mail in our domain.

A mail that an alias or a forward sends on to another domain keeps the original
envelope sender, so the next hop checks SPF against the sender's domain, which does
not list us: SPF fails. SRS rewrites that sender into an address of our own domain
that still leads back to the original one::

    alice@a.example  ->  SRS0=HHHH=TT=a.example=alice@b.example

``HHHH`` is an HMAC (SHA-1, base64, the first ``hash_length`` characters, compared
without case) of the timestamp, domain and local part under a secret of ours; ``TT``
is the day number modulo 1024 in two base-32 characters. A sender that is already an
SRS0 address of another forwarder becomes an SRS1 address that leads back to that
forwarder. This is the format of libsrs2 and postsrsd (draft-mengwong-sender-rewrite,
the "Guarded" scheme), made by ``srslib``: mail we rewrite bounces correctly through
forwarders that use those.

A bounce to such an address is accepted only when the hash matches under one of our
secrets and the timestamp is at most ``max_age_days`` old; it then goes to the
original sender. Anything else that looks like SRS at our domain is refused, so the
address cannot be used to relay through us. ``srslib`` accepts a hash of any length
(down to one character, which a forger guesses at the first tries); we require at
least ``hash_length`` characters before asking it, as libsrs2 does (``hashmin``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import srslib

from mailet_mta.api import MailAddress, MailAddressError

MAX_SECRETS = 16                  # lines of the secret file (the first one signs)
MAX_SECRET_FILE = 64 * 1024       # octets read from it
MIN_SECRET_LENGTH = 16            # characters: a short secret is guessed
DEFAULT_HASH_LENGTH = 4           # as libsrs2 and postsrsd
DEFAULT_MAX_AGE_DAYS = 21         # as libsrs2 and postsrsd

# SRS0 or SRS1, then a separator, then the hash up to the next "=".
_SRS = re.compile(r"(?i)SRS([01])[-+=]([^=]*)=")


class SRSError(ValueError):
    """An address that claims to be SRS of ours and is not (forged, expired, broken)."""


def read_secrets(path: str | Path) -> list[str]:
    """The secrets in ``path``, one a line (the first signs; all verify, so an old one
    can stay while its addresses may still bounce back). ValueError saying why."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the SRS secret file {p}: {exc.strerror}") from None
    if len(data) > MAX_SECRET_FILE:
        raise ValueError(f"the SRS secret file {p} is larger than {MAX_SECRET_FILE} octets")
    try:
        lines = [line.strip() for line in data.decode("utf-8").splitlines()]
    except UnicodeDecodeError:
        raise ValueError(f"the SRS secret file {p} is not UTF-8 text") from None
    secrets = [line for line in lines if line and not line.startswith("#")]
    if not secrets:
        raise ValueError(f"the SRS secret file {p} holds no secret")
    if len(secrets) > MAX_SECRETS:
        raise ValueError(f"the SRS secret file {p} holds more than {MAX_SECRETS} secrets")
    short = [i + 1 for i, s in enumerate(secrets) if len(s) < MIN_SECRET_LENGTH]
    if short:
        raise ValueError(f"the SRS secret file {p}: secret {short[0]} is shorter than "
                         f"{MIN_SECRET_LENGTH} characters (make one with: "
                         f"head -c 24 /dev/urandom | base64)")
    return secrets


class SenderRewriting:
    """Rewrites senders into ``domain`` and reverses such addresses."""

    def __init__(self, secrets: list[str], domain: str,
                 max_age_days: int = DEFAULT_MAX_AGE_DAYS,
                 hash_length: int = DEFAULT_HASH_LENGTH):
        if not secrets:
            raise ValueError("SRS needs a secret")
        if not 1 <= max_age_days <= 1023:           # the timestamp wraps at 1024 days
            raise ValueError("maxAge must be between 1 and 1023 days")
        if not 4 <= hash_length <= 27:               # 27: a base64 SHA-1 digest, unpadded
            raise ValueError("hashLength must be between 4 and 27")
        self.domain = domain.lower().rstrip(".")
        self.hash_length = hash_length
        self._srs = srslib.SRS(secrets[0], prev_secrets=secrets[1:],
                               validity_days=max_age_days, hash_length=hash_length)

    @classmethod
    def from_file(cls, path: str | Path, domain: str, max_age_days: int = DEFAULT_MAX_AGE_DAYS,
                  hash_length: int = DEFAULT_HASH_LENGTH) -> SenderRewriting:
        return cls(read_secrets(path), domain, max_age_days, hash_length)

    def is_srs(self, address: MailAddress) -> bool:
        """An address at our SRS domain whose local part says SRS0 or SRS1."""
        return address.domain.lower() == self.domain and \
            _SRS.match(address.local_part) is not None

    def forward(self, sender: MailAddress) -> MailAddress:
        """``sender`` rewritten into our domain (SRS0, or SRS1 for an SRS0 sender of
        another forwarder; one of ours is rewritten again as SRS0 of our own).
        MailAddressError when the result is not a valid address (a local part over
        64 octets: the original's local part and domain are in it)."""
        text = self._srs.forward(f"{sender.local_part}@{sender.domain}", self.domain)
        return MailAddress.parse(text)

    def reverse(self, address: MailAddress) -> MailAddress:
        """Where a bounce to ``address`` (an SRS address at our domain) goes: the
        original sender (SRS0), or the first forwarder's SRS0 address (SRS1).
        SRSError when the hash or the age is wrong."""
        m = _SRS.match(address.local_part)
        if m is None:
            raise SRSError("not an SRS address")
        if len(m.group(2)) < self.hash_length:
            raise SRSError("the hash is too short")
        try:
            original = self._srs.reverse(f"{address.local_part}@{address.domain}")
        except srslib.InvalidHashError:
            raise SRSError("the hash does not match") from None
        except srslib.InvalidTimestampError:
            raise SRSError("the address has expired") from None
        except srslib.Error:
            raise SRSError("the address is malformed") from None
        try:
            return MailAddress.parse(original)
        except MailAddressError:
            raise SRSError("the address is malformed") from None

    def mapping(self, address: MailAddress) -> list[str]:
        """``address`` as a rewrite-table answer: the address to send to, or an
        ``error:`` target with the refusal (550 5.7.1) for a forged or expired one."""
        try:
            return [str(self.reverse(address))]
        except SRSError as exc:
            return [f"error:550 5.7.1 <{address}>: invalid SRS address ({exc})"]


PARAMETERS = ("secretFile", "domain", "maxAge", "hashLength")


def from_parameters(parameters: Mapping[str, Any], server_name: str) -> SenderRewriting:
    """The rewriting an ``SRS`` mailet's parameters describe (``domain`` defaults to
    ``server_name``); ValueError saying what is wrong. The SMTP server reads the same
    parameters, so RCPT and the mailet agree."""
    path = str(parameters.get("secretFile") or "").strip()
    if not path:
        raise ValueError("the parameter 'secretFile' is required")
    domain = str(parameters.get("domain") or server_name).strip()
    try:
        MailAddress("srs", domain)
    except MailAddressError as exc:
        raise ValueError(f"domain {domain!r} is not a domain ({exc})") from None
    numbers = {}
    for name, default in (("maxAge", DEFAULT_MAX_AGE_DAYS),
                          ("hashLength", DEFAULT_HASH_LENGTH)):
        value = parameters.get(name)
        try:
            numbers[name] = default if value is None else int(str(value).strip())
        except ValueError:
            raise ValueError(f"{name} must be an integer, not {value!r}") from None
    return SenderRewriting.from_file(path, domain, numbers["maxAge"], numbers["hashLength"])


def configured(spoolmanager: Any, server_name: str) -> SenderRewriting | None:
    """The rewriting of the first ``SRS`` mailet in the spool manager configuration,
    or None (none configured, or broken: the mailet's own init reports that)."""
    for processor in spoolmanager.processors.values():
        for spec in processor.mailets:
            if spec.mailet.rpartition(".")[2] != "SRS":
                continue
            try:
                return from_parameters(spec.parameters, server_name)
            except ValueError:
                return None
    return None
