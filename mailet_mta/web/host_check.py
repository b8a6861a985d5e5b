"""Which ``Host`` an HTTP listener answers: the defence against DNS rebinding.

A page on ``http://evil.example`` whose name the attacker re-points to 127.0.0.1
makes the browser send requests to a loopback listener with ``Host: evil.example``
(and the browser treats the answers as evil.example's own). Checking the name the
request was sent to stops that: a request names one of the listener's names or an IP
address, or it is refused.

- The names are the section's ``hostnames`` when set; otherwise ``localhost``, the
  ``servernames``, the SMTP listeners' ``helloName`` and the bind address (when it is
  a name). An entry ``*.example.com`` matches every name below example.com.
- An IP literal (``127.0.0.1``, ``[::1]``) is always accepted: it cannot be rebound,
  since the browser's origin is then the address itself.
- The port in ``Host`` is not compared (a proxy may forward from another port).

A name not in the list is answered ``421 Misdirected Request`` (RFC 9110 §15.5.20:
this server will not answer for that name); a request without exactly one
well-formed ``Host`` is ``400 Bad Request`` (RFC 9112 §3.2).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from .http import HTTPError

_PORT = re.compile(r"(?::[0-9]{1,5})?")
_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]{0,252})")


def normalise(name: str) -> str:
    """A configured or requested name as compared: lower case, no trailing dot."""
    return name.strip().lower().rstrip(".")


def default_hostnames(section, server_config) -> list[str]:
    """The names a listener answers when its section sets no ``hostnames``."""
    names = ["localhost", *server_config.servernames]
    names += [s.helo_name for s in server_config.smtpservers if s.helo_name]
    host = getattr(section, "host", "")
    if host and not section.listen and not _is_ip(host):
        names.append(host)
    return list(dict.fromkeys(normalise(n) for n in names if n))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    return True


def host_name(header: str) -> str | None:
    """The name or address of a ``Host`` value without its port, or None when the
    value is malformed."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or not _PORT.fullmatch(value[end + 1:]):
            return None
        inner = value[1:end]
        return inner if _is_ip(inner) and ":" in inner else None
    name, _, port = value.partition(":")
    if port and not port.isdigit() or len(port) > 5:
        return None
    name = name.rstrip(".")
    return name if _NAME.fullmatch(name) else None


class HostCheck:
    """Accepts a request whose ``Host`` is one of ``names`` or an IP literal."""

    def __init__(self, names: Iterable[str]):
        self.exact: set[str] = set()
        self.suffixes: list[str] = []
        for raw in names:
            name = normalise(raw)
            if name.startswith("*."):
                self.suffixes.append(name[1:])
            elif name:
                self.exact.add(name)

    def allows(self, name: str) -> bool:
        """True when a request for ``name`` (from :func:`host_name`) is answered."""
        if _is_ip(name) or name in self.exact:
            return True
        return any(name.endswith(s) and len(name) > len(s) for s in self.suffixes)

    def check(self, request) -> None:
        """Raise :class:`HTTPError` 400 or 421 unless ``request`` is for us."""
        values = request.requestHeaders.getRawHeaders(b"host") or []
        if len(values) != 1:
            raise HTTPError(400, "Bad request", "the request needs exactly one Host "
                            "header")
        name = host_name(values[0].decode("latin-1"))
        if name is None:
            raise HTTPError(400, "Bad request", "the Host header is malformed")
        if not self.allows(name):
            raise HTTPError(421, "Misdirected request",
                            f"this server does not answer for {name[:100]!r}; reach it by "
                            f"one of its configured names (hostnames)")


def host_check(section, server_config) -> HostCheck:
    """The check of an HTTP listener ``section`` (webadmin, webmail)."""
    names = section.hostnames
    if names is None:
        names = default_hostnames(section, server_config)
    return HostCheck(names)
