"""Passwords for authenticated next hops, read from the configuration at delivery time.

A queued mail names its gateways and AUTH user, never the password: a row of the
``outgoing`` table can be read by whoever reads the database (backups, ``mailet-mta
queue list``, another node), the configuration file is private. The passwords come
from the ``smarthost`` section and from every mailet entry that carries
``gateway`` + ``gatewayUsername`` + ``gatewayPassword`` (RemoteDelivery's parameters),
keyed by (host, port, user) as Postfix's ``smtp_sasl_password_maps`` is keyed by the
next hop.
"""

from __future__ import annotations

from ..api import ConfigurationError, parse_host_list

DEFAULT_GATEWAY_PORT = 25


class RelayCredentials:
    """The table (host, port, user) → password; empty when nothing needs AUTH."""

    def __init__(self):
        self._table: dict[tuple[str, int, str], str] = {}

    def __len__(self) -> int:
        return len(self._table)

    def add(self, host: str, port: int, username: str, password: str) -> None:
        self._table[(host.lower(), int(port), username)] = password

    def password(self, host: str, port: int, username: str) -> str | None:
        """The configured password of ``username`` at ``host``:``port``, or None."""
        return self._table.get((host.lower(), int(port), username))

    @classmethod
    def from_config(cls, config) -> RelayCredentials:
        """Every password the configuration holds for a gateway."""
        table = cls()
        smarthost = config.smarthost
        if smarthost is not None and smarthost.username is not None:
            table._add_all(smarthost.hosts, smarthost.port, smarthost.username,
                           smarthost.password or "")
        for processor in config.spoolmanager.processors.values():
            for spec in processor.mailets:
                params = spec.parameters
                if params.get("gateway") and params.get("gatewayUsername") is not None \
                        and params.get("gatewayPassword") is not None:
                    try:
                        port = int(str(params.get("gatewayPort") or DEFAULT_GATEWAY_PORT))
                    except ValueError:
                        continue      # the mailet refuses this entry at start-up
                    table._add_all(params["gateway"], port, str(params["gatewayUsername"]),
                                   str(params["gatewayPassword"]))
        return table

    def _add_all(self, hosts, default_port: int, username: str, password: str) -> None:
        try:
            gateways = parse_host_list(hosts, default_port)
        except ConfigurationError:
            return                    # refused where it is read (loader or mailet)
        for host, port in gateways:
            self.add(host, port, username, password)


def smarthost_route(config) -> dict | None:
    """What a mailet may know of the smarthost: its gateways and AUTH user (no password);
    the value of the server-wide attribute ``mailet_mta.smarthost``."""
    smarthost = getattr(config, "smarthost", None)
    if smarthost is None:
        return None
    return {"gateways": parse_host_list(smarthost.hosts, smarthost.port),
            "username": smarthost.username}
