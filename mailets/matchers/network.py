"""The client's IP address against a network list: RemoteAddrInNetwork and
RemoteAddrNotInNetwork, sharing :class:`NetMatcher`.

A network list is comma-separated; each entry is one of

- an address: ``192.0.2.7``, ``2001:db8::1`` (``[2001:db8::1]`` also accepted);
- CIDR: ``10.0.0.0/8``, ``2001:db8::/32`` (host bits may be set: ``127.0.0.1/8``);
- address/netmask: ``127.0.0.0/255.0.0.0``;
- a wildcard: ``192.168.0.*``, ``10.*`` (trailing ``*`` octets);
- ``localhost``: ``127.0.0.0/8`` and ``::1``.

Other host names are refused at start-up: resolving them would make the rule depend on
DNS at an unknown moment; write the addresses instead.
"""

from __future__ import annotations

import ipaddress

from mailet_mta.api import Mail

from .whole_mail import WholeMailMatcher

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_LOCALHOST = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _parse_wildcard(entry: str) -> Network:
    parts = entry.split(".")
    if len(parts) > 4 or parts[-1] != "*":
        raise ValueError("a wildcard is written like 192.168.0.* (stars only at the end)")
    fixed = [p for p in parts if p != "*"]
    if len(fixed) + parts.count("*") != len(parts) or "*" in parts[: len(fixed)]:
        raise ValueError("a wildcard is written like 192.168.0.* (stars only at the end)")
    octets = fixed + ["0"] * (4 - len(fixed))
    return ipaddress.ip_network(f"{'.'.join(octets)}/{8 * len(fixed)}")


def parse_network(entry: str) -> tuple[Network, ...]:
    """One network-list entry → a tuple of ``ipaddress`` networks; ValueError if invalid."""
    text = entry.strip()
    if text.lower() == "localhost":
        return _LOCALHOST
    if text.startswith("[") and "]" in text:
        text = text[1:].replace("]", "", 1)
    if "*" in text:
        return (_parse_wildcard(text),)
    try:
        return (ipaddress.ip_network(text, strict=False),)
    except ValueError:
        pass
    if any(c.isalpha() for c in text.split("/")[0]) and ":" not in text:
        raise ValueError(f"{entry!r} is a host name; write its IP address or network "
                         f"(host names are not resolved in network lists)")
    raise ValueError(f"{entry!r} is not an IP address, CIDR network, "
                     f"address/netmask or wildcard like 192.168.0.*")


def parse_network_list(text: str) -> list[Network]:
    """A comma-separated network list → ``ipaddress`` networks; ValueError on a bad entry."""
    networks: list[Network] = []
    for entry in (text or "").split(","):
        if entry.strip():
            networks.extend(parse_network(entry))
    return networks


class NetMatcher(WholeMailMatcher):
    """Base: parses the condition as a network list and tests ``mail.remote_addr``."""

    condition_required = True

    def init_matcher(self) -> None:
        try:
            self.networks = parse_network_list(self.condition or "")
        except ValueError as exc:
            self.fail(str(exc))
        if not self.networks:
            self.fail("needs at least one network, like 127.0.0.1/8, 10.0.0.0/8")

    def in_network(self, remote_addr: object) -> bool:
        """True when ``remote_addr`` (text) is inside one of the networks."""
        try:
            addr = ipaddress.ip_address(str(remote_addr).strip("[]").split("%")[0])
        except ValueError:
            return False
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == net.version and addr in net for net in self.networks)


class RemoteAddrInNetwork(NetMatcher):
    """Matches all recipients when the client IP is in the list:
    ``RemoteAddrInNetwork=127.0.0.1/8, 10.0.0.0/255.0.0.0, 192.168.0.*, ::1``."""

    def matches(self, mail: Mail) -> bool:
        return self.in_network(mail.remote_addr)


class RemoteAddrNotInNetwork(NetMatcher):
    """Matches all recipients when the client IP is not in the list:
    ``RemoteAddrNotInNetwork=127.0.0.1/8``. An unparseable client address is "not in"."""

    def matches(self, mail: Mail) -> bool:
        return not self.in_network(mail.remote_addr)
