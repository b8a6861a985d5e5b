"""RemoteDelivery: hand a mail to the outgoing queue for delivery to other servers.

The parameters are James's (``RemoteDeliveryConfiguration``): ``outgoing``,
``delayTime``, ``maxRetries``, ``maxDnsProblemRetries``, ``timeout``,
``connectiontimeout``, ``sendpartial``, ``bounceProcessor``, ``onSuccess``, ``gateway``,
``gatewayPort``, ``gatewayUsername``, ``gatewayPassword``, ``startTLS``,
``verifyServerIdentity``, ``heloName``. They are checked at start-up and stored with each
queue entry as a JSON object, so a queued mail keeps the settings it was queued with —
except the gateway password, which stays in the configuration and is looked up when
the mail is delivered.

Without a ``gateway`` parameter the server's ``smarthost`` (a top-level configuration
key) is the gateway; without either, mail goes to each recipient domain's MX.
"""

from __future__ import annotations

import re
from typing import Any

from mailet_mta.api import ATTR_SMARTHOST, ConfigurationError, GenericMailet, Mail, parse_host_list

DEFAULT_DELAY = 6 * 3600.0          # James: one retry after six hours
DEFAULT_MAX_RETRIES = 5

_DELAY_ITEM_RE = re.compile(r"^\s*(?:(\d+)\s*\*)?\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_DELAY_UNITS = {
    "": 0.001, "ms": 0.001, "msec": 0.001, "msecs": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}
_STARTTLS_MODES = {"opportunistic": "opportunistic", "true": "opportunistic",
                   "required": "required", "false": "never", "never": "never"}


def parse_delay_time(text: str | list[str], name: str = "delayTime") -> list[float]:
    """``"5*5 minutes, 3*1 hour"`` → the delays in seconds, one per retry.

    Each item is ``[n*]delay [unit]``; a bare number is in milliseconds as in James.
    """
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    delays: list[float] = []
    for item in items:
        item = str(item)
        if not item.strip():
            continue
        m = _DELAY_ITEM_RE.match(item)
        unit = m.group(3).lower() if m else None
        if not m or unit not in _DELAY_UNITS:
            raise ConfigurationError(
                f"{name}: {item.strip()!r} is not a delay like '5000', '5*5 minutes' or "
                f"'1 hour' (units: msec, sec, minute, hour, day)")
        count = int(m.group(1)) if m.group(1) else 1
        if count < 1:
            raise ConfigurationError(f"{name}: the repeat count in {item.strip()!r} must be "
                                     f"at least 1")
        delays.extend([float(m.group(2)) * _DELAY_UNITS[unit]] * count)
    if not delays:
        raise ConfigurationError(f"{name} is empty; give delays like '5*5 minutes, 3*1 hour'")
    return delays


class RemoteDelivery(GenericMailet):
    """Queue the mail for delivery to its recipients' mail servers (or a gateway).

    Recipients are grouped by domain (one queue entry per domain; one entry in all when
    a gateway is set). The mail is then ghosted: the outgoing queue owns it, and failed
    recipients come back through ``bounceProcessor``.
    """

    info = "RemoteDelivery: queues mail for SMTP delivery to remote servers"
    parameters = ("outgoing", "delayTime", "maxRetries", "maxDnsProblemRetries", "timeout",
                  "connectiontimeout", "sendpartial", "bounceProcessor", "onSuccess",
                  "gateway", "gatewayPort", "gatewayUsername", "gatewayPassword",
                  "startTLS", "verifyServerIdentity", "heloName", "debug", "mail.smtp.timeout",
                  "loadBalancing", "usePriority", "bind", "deliveryThreads")

    def init_mailet(self) -> None:
        self.outgoing = str(self.get_init_parameter("outgoing", "outgoing")).strip()
        if not self.outgoing:
            self.fail("outgoing (the queue name) must not be empty")
        self.options = self._parse_options()

    def _parse_options(self) -> dict[str, Any]:
        delay_param = self.get_init_parameter("delayTime")
        try:
            delays = (parse_delay_time(delay_param) if delay_param is not None
                      else [DEFAULT_DELAY])
        except ConfigurationError as exc:
            self.fail(exc.message)
        max_retries = self.get_int("maxRetries", max(DEFAULT_MAX_RETRIES, len(delays))) or 0
        max_dns = self.get_int("maxDnsProblemRetries", 0) or 0
        if max_retries < 0 or max_dns < 0:
            self.fail("maxRetries and maxDnsProblemRetries must be 0 or more")
        timeout = self._positive_duration("timeout", 180.0)
        conn_timeout = self._positive_duration("connectiontimeout", 60.0)
        starttls_text = str(self.get_init_parameter("startTLS", "opportunistic")).strip().lower()
        starttls = _STARTTLS_MODES.get(starttls_text)
        if starttls is None:
            self.fail(f"startTLS must be opportunistic, required or false, not "
                       f"{starttls_text!r}")
        verify_default = starttls == "required"
        gateways, username = self._route()
        on_success = self.get_init_parameter("onSuccess")
        return {
            "delays": delays,
            "maxRetries": max_retries,
            "maxDnsProblemRetries": max_dns,
            "timeout": timeout,
            "connectionTimeout": conn_timeout,
            "sendPartial": self.get_bool("sendpartial", False),
            "bounceProcessor": str(self.get_init_parameter("bounceProcessor", "bounces")),
            "onSuccess": str(on_success) if on_success else None,
            "gateways": gateways,
            "gatewayUsername": username,
            "startTLS": starttls,
            "verifyServerIdentity": self.get_bool("verifyServerIdentity", verify_default),
            "heloName": (str(self.get_init_parameter("heloName")).strip()
                         if self.get_init_parameter("heloName") else None),
        }

    def _positive_duration(self, name: str, default: float) -> float:
        value = self.get_duration(name, default, default_unit="ms"
                                  if str(self.get_init_parameter(name, "")).strip().isdigit()
                                  else "s")
        if value is None or value <= 0:
            self.fail(f"{name} must be greater than zero")
        return value

    def _route(self) -> tuple[list[list[Any]], str | None]:
        """The gateways and AUTH user: this mailet's ``gateway`` parameters, else the
        server's smarthost, else none (each domain's MX). The password is never part of
        the options: the outgoing queue reads it from the configuration at delivery."""
        gateways = self._gateways()
        username = self.get_init_parameter("gatewayUsername")
        password = self.get_init_parameter("gatewayPassword")
        if (username is None) != (password is None):
            self.fail("gatewayUsername and gatewayPassword must be given together")
        if gateways:
            return gateways, str(username) if username is not None else None
        if username is not None:
            self.fail("gatewayUsername needs a gateway")
        smarthost = (self.context.get_attribute(ATTR_SMARTHOST)
                     if self.context is not None else None)
        if smarthost:
            return [list(g) for g in smarthost["gateways"]], smarthost.get("username")
        return [], None

    def _gateways(self) -> list[list[Any]]:
        gateway = self.get_init_parameter("gateway")
        if gateway is None or not str(gateway).strip():
            return []
        port = self.get_int("gatewayPort", 25) or 0
        if not 0 < port < 65536:
            self.fail(f"gatewayPort must be 1-65535, not {port}")
        try:
            return parse_host_list(gateway, port)
        except ConfigurationError as exc:
            self.fail(exc.message)

    def required_processors(self) -> list[str]:
        """Processors this mailet sends mail to: bounceProcessor (and onSuccess)."""
        out = [self.options["bounceProcessor"]]
        if self.options["onSuccess"]:
            out.append(self.options["onSuccess"])
        return out

    async def service(self, mail: Mail) -> None:
        if not mail.recipients:
            mail.state = Mail.GHOST
            return
        await self.context.queue_remote(mail, queue=self.outgoing, options=self.options)
        mail.state = Mail.GHOST
