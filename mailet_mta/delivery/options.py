"""The settings a queued mail carries (RemoteDelivery's parameters, parsed) and the
retry schedule they define."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_DELAYS = [6 * 3600.0]


@dataclass(frozen=True)
class DeliveryOptions:
    """The JSON ``options`` of an ``outgoing`` row as a typed object.

    Missing keys take James's defaults, so a row written by an older version (or by
    hand) still delivers.
    """

    delays: tuple[float, ...] = tuple(DEFAULT_DELAYS)
    max_retries: int = 5
    max_dns_retries: int = 0
    timeout: float = 180.0
    connection_timeout: float = 60.0
    send_partial: bool = False
    bounce_processor: str = "bounces"
    on_success: str | None = None
    gateways: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: str = "opportunistic"          # opportunistic | required | never
    verify_server_identity: bool = False
    helo_name: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DeliveryOptions:
        data = data or {}
        delays = tuple(float(d) for d in (data.get("delays") or DEFAULT_DELAYS))
        return cls(
            delays=delays,
            max_retries=int(data.get("maxRetries", max(5, len(delays)))),
            max_dns_retries=int(data.get("maxDnsProblemRetries", 0)),
            timeout=float(data.get("timeout", 180.0)),
            connection_timeout=float(data.get("connectionTimeout", 60.0)),
            send_partial=bool(data.get("sendPartial", False)),
            bounce_processor=data.get("bounceProcessor") or "bounces",
            on_success=data.get("onSuccess") or None,
            gateways=tuple((str(h), int(p)) for h, p in (data.get("gateways") or ())),
            username=data.get("gatewayUsername"),
            password=data.get("gatewayPassword"),
            starttls=data.get("startTLS", "opportunistic"),
            verify_server_identity=bool(data.get("verifyServerIdentity",
                                                 data.get("startTLS") == "required")),
            helo_name=data.get("heloName"),
        )

    def connection_key(self) -> tuple:
        """What decides whether two queue entries may share one SMTP connection."""
        return (self.gateways, self.username, self.password, self.starttls,
                self.verify_server_identity, self.helo_name, self.timeout,
                self.connection_timeout)

    def delay_after(self, failures: int) -> float | None:
        """Seconds to wait after the ``failures``-th failed attempt, or None when the
        retries are used up (then the remaining recipients bounce).

        ``maxRetries`` retries follow the first attempt; past the end of ``delays`` the
        last delay repeats (James's rule).
        """
        if failures > self.max_retries:
            return None
        return self.delays[min(failures, len(self.delays)) - 1]
