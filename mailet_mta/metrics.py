"""Prometheus metrics: counters on the hot paths, database gauges read at scrape time.

Counters and histograms live in one module-level registry (:data:`REGISTRY`) and are
updated where things happen (an SMTP connection, a refused command, a mail accepted,
a mailbox delivery, a processor run). Each call site uses a child already bound to its
labels (:func:`connection`, :func:`processor_timer`…), so the hot path does one dict
look-up and one locked add, never a label lookup.

What lives in the database — spool depth per processor, the outgoing queue, the
repositories — is read when Prometheus scrapes, by :class:`ServerCollector`, on the
scraping thread (twisted.web's ``MetricsResource`` runs collection in a thread), never
on the reactor.

The endpoint is off unless the configuration has ``metrics: {listen: ENDPOINT}``;
:func:`metrics_service` builds the listener service the server adds to itself.
"""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from .spool.observer import PipelineObserver

log = Logger(namespace="mailet_mta.metrics")

REGISTRY = CollectorRegistry(auto_describe=True)
PREFIX = "mailet_mta"

CONNECTIONS = Counter(f"{PREFIX}_connections", "Connections accepted by a listener",
                      ["protocol", "listener"], registry=REGISTRY)
SMTP_TRANSACTIONS = Counter(f"{PREFIX}_smtp_transactions",
                            "SMTP transactions started (MAIL FROM accepted)",
                            registry=REGISTRY)
SMTP_ACCEPTED = Counter(f"{PREFIX}_smtp_accepted_mails",
                        "Mails received over SMTP and durably queued", ["listener"],
                        registry=REGISTRY)
SMTP_REJECTED = Counter(f"{PREFIX}_smtp_rejected",
                        "SMTP commands refused with a 4xx/5xx reply, by reason",
                        ["reason", "code"], registry=REGISTRY)
DELIVERIES = Counter(f"{PREFIX}_deliveries",
                     "Delivery outcomes per recipient (relay=local|remote, "
                     "status=sent|deferred|bounced)", ["relay", "status"],
                     registry=REGISTRY)
PROCESSOR_SECONDS = Histogram(f"{PREFIX}_processor_seconds",
                              "Time a mail spends in one processor (one visit)",
                              ["processor"], registry=REGISTRY,
                              buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25,
                                       .5, 1, 2.5, 5, 10, 30))

# Enhanced status codes → the reason label of SMTP_REJECTED (RFC 3463).
REJECT_REASONS = {
    "5.7.1": "relay_denied_or_policy", "5.7.0": "auth_required",
    "5.7.8": "auth_failed", "5.7.11": "encryption_required",
    "5.1.1": "unknown_user", "5.1.3": "bad_recipient", "5.1.7": "bad_sender",
    "5.1.6": "user_moved", "5.3.4": "message_too_big", "5.2.2": "mailbox_full",
    "4.2.1": "mailbox_unavailable", "4.5.3": "too_many_recipients",
    "4.7.0": "temporary_policy", "4.3.0": "temporary_failure",
    "4.3.2": "shutting_down", "4.4.2": "timeout", "5.6.11": "bare_line_end",
    "5.6.7": "non_ascii_address", "5.5.1": "bad_sequence", "5.5.2": "syntax",
    "5.5.4": "syntax",
}

_children: dict[tuple, object] = {}


def _child(metric, *labels):
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def connection(protocol: str, listener: str) -> None:
    """Count one accepted connection."""
    _child(CONNECTIONS, protocol, listener).inc()


def smtp_accepted(listener: str) -> None:
    _child(SMTP_ACCEPTED, listener).inc()


def smtp_reply(code: int, enhanced: str | None) -> None:
    """Count a refusing reply (code ≥ 400); other replies cost one comparison."""
    if code >= 400:
        reason = REJECT_REASONS.get(enhanced or "", "other")
        _child(SMTP_REJECTED, reason, str(code)).inc()


def delivery(relay: str, status: str, recipients: int = 1) -> None:
    """Count delivery outcomes: relay local|remote, status sent|deferred|bounced."""
    _child(DELIVERIES, relay, status).inc(recipients)


def processor_timer(name: str):
    """The histogram child of processor ``name`` (call ``.observe(seconds)``)."""
    return _child(PROCESSOR_SECONDS, name)


# -- what the database knows, read at scrape time ------------------------------------------
class ServerCollector:
    """Gauges read from one server's database and listeners when Prometheus scrapes."""

    def __init__(self, server):
        self.server = server

    def describe(self):
        return []   # collected lazily: the registry must not query the database at start

    def collect(self):
        server = self.server
        yield self._sessions()
        try:
            with server.db.engine.connect() as conn:
                figures = read_figures(conn)
        except Exception as exc:  # noqa: BLE001 - a scrape never takes the server down
            log.warn("metrics: cannot read the database: {error}", error=exc)
            return
        yield _gauge("spool_mails", "Mails in the spool by processor state", ["state"],
                     {(k,): n for k, n in figures["spool"].items()})
        yield _gauge("outgoing_recipients", "Recipients in the outgoing queue by status",
                     ["queue", "status"], figures["outgoing"])
        yield _gauge("outgoing_entries", "Outgoing queue entries (one per mail and "
                     "destination)", ["queue"],
                     {(k,): n for k, n in figures["outgoing_entries"].items()})
        yield _gauge("repository_mails", "Mails kept in each repository (error, "
                     "relay-denied, …)", ["repository"],
                     {(k,): n for k, n in figures["repositories"].items()})

    def _sessions(self):
        family = GaugeMetricFamily(f"{PREFIX}_open_sessions", "Sessions open now",
                                   labels=["protocol", "listener"])
        for name, kind, svc in list(getattr(self.server, "listeners", ())):
            if kind not in ("smtp", "pop3", "imap"):
                continue
            factory = getattr(svc, "factory", None)
            sessions = getattr(factory, "sessions", ())
            family.add_metric([kind, name], len(sessions))
        return family


def _gauge(name: str, text: str, labels: list[str], values: dict[tuple, int]):
    family = GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=labels)
    for key, count in sorted(values.items()):
        family.add_metric(list(key), count)
    return family


def read_figures(conn) -> dict:
    """Spool, outgoing queue and repository counts (blocking; any thread but the reactor)."""
    from sqlalchemy import func, select

    from .storage import schema

    spool = dict(conn.execute(select(schema.spool.c.state, func.count())
                              .group_by(schema.spool.c.state)).all())
    outgoing: dict[tuple[str, str], int] = {}
    entries: dict[str, int] = {}
    out = schema.outgoing
    for queue, recipients in conn.execute(select(out.c.queue, out.c.recipients)):
        entries[queue] = entries.get(queue, 0) + 1
        for rcpt in _recipients(recipients):
            key = (queue, str(rcpt.get("status", "pending")))
            outgoing[key] = outgoing.get(key, 0) + 1
    repo = schema.repository_mails
    repositories = dict(conn.execute(select(repo.c.repository, func.count())
                                     .group_by(repo.c.repository)).all())
    return {"spool": spool, "outgoing": outgoing, "outgoing_entries": entries,
            "repositories": repositories}


def _recipients(text: str) -> list[dict]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [r if isinstance(r, dict) else {"address": r} for r in value]


# -- the HTTP endpoint ---------------------------------------------------------------------
class MetricsService(service.Service):
    """Serves ``/metrics`` on a Twisted endpoint; collection runs in a thread."""

    name = "metrics"

    def __init__(self, listen: str, server, source: str | None = None, reactor=None):
        self.listen = listen
        self.server = server
        self.source = source
        self._reactor = reactor
        self.port = None
        self.collector = ServerCollector(server)
        self.endpoint = self._endpoint()

    def _endpoint(self):
        from twisted.internet import endpoints

        from .api import ConfigurationError

        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        try:
            return endpoints.serverFromString(reactor, self.listen)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"metrics.listen {self.listen!r} is not a Twisted "
                                     f"endpoint string ({exc}); write e.g. "
                                     f"tcp:9464:interface=127.0.0.1", self.source) from None

    def startService(self):
        from prometheus_client.twisted import MetricsResource
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        super().startService()
        REGISTRY.register(self.collector)
        root = Resource()
        root.putChild(b"metrics", MetricsResource(registry=REGISTRY))
        root.putChild(b"", MetricsResource(registry=REGISTRY))
        site = Site(root)
        site.noisy = False
        site.log = lambda request: None   # scrapes are not access-logged
        d = self.endpoint.listen(site)

        def bound(port):
            self.port = port
            host = port.getHost()
            log.info("metrics listening on {host}:{port} (/metrics)", host=host.host,
                     port=host.port)
            return port

        def failed(failure):
            log.error("metrics endpoint {listen} could not listen: {error}",
                      listen=self.listen, error=failure.getErrorMessage())
            return failure

        self.listening = d.addCallbacks(bound, failed)
        return self.listening

    def stopService(self):
        super().stopService()
        try:
            REGISTRY.unregister(self.collector)
        except KeyError:
            pass
        port, self.port = self.port, None
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return defer.succeed(None)


class MetricsObserver(PipelineObserver):
    """Times every visit of a mail to a processor (``processor_seconds``)."""

    timed = True

    def processor_time(self, processor: str, seconds: float) -> None:
        processor_timer(processor).observe(seconds)


def metrics_listen(config) -> str | None:
    """The configured ``metrics.listen`` endpoint, or None."""
    cfg = config.extra.get("metrics")
    return getattr(cfg, "listen", None) if cfg is not None else None


def metrics_service(config, server) -> MetricsService | None:
    """The /metrics listener of ``server`` when ``metrics.listen`` is configured."""
    listen = metrics_listen(config)
    if not listen:
        return None
    cfg = config.extra["metrics"]
    return MetricsService(listen, server, getattr(cfg, "source", None))
