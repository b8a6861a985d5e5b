"""Who may relay, when AUTH is offered, and which senders are allowed (James semantics).

- ``auth_required`` = ``"true"``: clients outside ``authorized_addresses`` must
  authenticate to relay; AUTH is offered to every client (those inside may relay
  without it, but may log in too). ``"announce"``: the same offer. ``"false"``: AUTH is
  never offered; only ``authorized_addresses`` may relay.
- A recipient is *local* when its domain is local (or an IP literal of this host).
  Local recipients are never relayed, whatever their local part holds (``%``, ``!``,
  a quoted ``@``): the pipeline delivers or bounces them here.
- A remote recipient is refused unless relaying is allowed: ``530 5.7.1
  Authentication required`` when AUTH is offered to this client, else ``550 5.7.1
  Relaying denied``.
- ``verify_identity``: ``"strict"`` — an authenticated client's MAIL FROM in a local
  domain must be one of its identities (else ``553 5.7.1``), and an unauthenticated
  client that may not relay cannot use a local-domain sender while AUTH is offered to
  it (``530 5.7.1``, James JAMES-3225). ``"relaxed"`` — only the authenticated check.
  ``"false"`` — no check.
"""

from __future__ import annotations

import ipaddress

from ..address import MailAddress
from ..api import ConfigurationError

_AUTH_MODES = {"true", "false", "announce"}
_IDENTITY_MODES = {"strict", "relaxed", "false"}


def parse_networks(specs, source=None) -> list:
    """``["127.0.0.0/8", "::1", "10.0.0.0/255.0.0.0"]`` → ip_network objects."""
    nets = []
    for spec in specs:
        text = str(spec).strip()
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"authorizedAddresses: {text!r} is not an IP address or CIDR network "
                f"(write e.g. 192.0.2.0/24 or 2001:db8::/32)", source) from None
    return nets


def ip_in(ip: str, networks) -> bool:
    """True when the textual address ``ip`` lies in one of ``networks``."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in networks)


class RelayPolicy:
    """The relay and identity rules of one listener (built from SMTPServerConfig)."""

    def __init__(self, config):
        mode = str(config.auth_required).lower()
        if mode not in _AUTH_MODES:
            raise ConfigurationError(
                f"authRequired must be true, false or announce, not {config.auth_required!r}",
                config.source)
        ident = str(config.verify_identity).lower()
        ident = {"true": "strict", "disabled": "false"}.get(ident, ident)
        if ident not in _IDENTITY_MODES:
            raise ConfigurationError(
                f"verifyIdentity must be strict, relaxed or false, not "
                f"{config.verify_identity!r}", config.source)
        self.auth_mode = mode
        self.identity_mode = ident
        self.networks = parse_networks(config.authorized_addresses, config.source)

    def is_authorized_network(self, ip: str) -> bool:
        return ip_in(ip, self.networks)

    def offers_auth(self, authorized_network: bool) -> bool:
        """Whether AUTH is advertised to (and accepted from) this client."""
        # AUTH is offered wherever a client may authenticate: an authorized network
        # may still relay without it, but a client set to always log in (submission,
        # a relay host's smarthost settings) must be able to.
        return self.auth_mode in ("true", "announce")

    @staticmethod
    def may_relay(authorized_network: bool, auth_user: str | None) -> bool:
        return authorized_network or auth_user is not None

    def sender_refusal(self, sender: MailAddress | None, sender_local: bool,
                       auth_user: str | None, identities, may_relay: bool,
                       offers_auth: bool) -> tuple[int, str, str] | None:
        """The reply refusing MAIL FROM ``sender``, or None when it is allowed."""
        if sender is None or not sender_local or self.identity_mode == "false":
            return None
        if auth_user is not None:
            if sender not in identities:
                return (553, "5.7.1", f"Sender <{sender}> not owned by user {auth_user}")
            return None
        if self.identity_mode == "strict" and not may_relay and offers_auth:
            return (530, "5.7.1", "Authentication required to use a local sender address")
        return None
