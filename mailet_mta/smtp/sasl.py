"""SASL PLAIN (RFC 4616) and LOGIN exchanges for SMTP AUTH (RFC 4954).

A mechanism is a small state machine: :meth:`step` takes the client's decoded
response (or None when the AUTH command had no initial response) and returns either
``("challenge", bytes)`` — send ``334 <base64>`` and wait for the next line — or
``("done", (username, password, authzid))``; ``authzid`` is ``""`` unless a PLAIN
client asked to act as another identity (RFC 4616 §2), which only the web mail's
internal credential may do (``ISMTPBackendOptional.authenticate_for``). Malformed
input raises :class:`SASLError`, which the session answers with 501 and keeps the
connection.
"""

from __future__ import annotations

import base64
import binascii


class SASLError(ValueError):
    """A malformed SASL response (answered ``501 5.5.2``)."""


def decode_response(line: str) -> bytes:
    """Decode one base64 client response; ``=`` is the empty response (RFC 4954 §4)."""
    line = line.strip()
    if line == "=":
        return b""
    try:
        return base64.b64decode(line.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SASLError("Invalid base64 data") from None


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SASLError("Credentials are not UTF-8") from None


class PlainMechanism:
    """``[authzid] NUL authcid NUL passwd``; an authzid equal to authcid is dropped,
    another one is handed on for the backend to allow or refuse."""

    name = "PLAIN"

    def step(self, response: bytes | None):
        if response is None:
            return ("challenge", b"")
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise SASLError("Malformed PLAIN response")
        authzid, authcid, passwd = (_text(p) for p in parts)
        if not authcid:
            raise SASLError("Malformed PLAIN response: empty user name")
        return ("done", (authcid, passwd, "" if authzid == authcid else authzid))


class LoginMechanism:
    """The de-facto LOGIN mechanism: ``Username:`` then ``Password:`` challenges."""

    name = "LOGIN"

    def __init__(self):
        self._user: str | None = None

    def step(self, response: bytes | None):
        if self._user is None:
            if response is None:
                return ("challenge", b"Username:")
            self._user = _text(response)
            if not self._user:
                raise SASLError("Empty user name")
            return ("challenge", b"Password:")
        return ("done", (self._user, _text(response or b""), ""))


MECHANISMS = {"PLAIN": PlainMechanism, "LOGIN": LoginMechanism}
