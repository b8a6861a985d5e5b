"""Hot reload: SIGHUP re-reads the configuration file without dropping anything.

What changes at once: the processors (a new Pipeline; mails already running finish on
the old one, which is destroyed when the spool is next idle), the spool manager's
threads/maxTries/errorRepository, ``servernames`` and ``postmaster``, every listener's
policy (authRequired, authorizedAddresses, limits, timeouts…, the checks before
``250`` that ``dmarcReject``/``arcTrustedSealers`` ask for) and TLS certificates,
the login throttle's limits (``authThrottle``), and the log level. Sessions already
open keep the settings they started with; new ones get the new settings.

What needs a restart (the log says so): ``storage``, listeners added, removed or moved
to another endpoint, ``metrics.listen``, ``logging.file``/``format``.

Each part applies its own settings: the plan is a list of ``reconfigure`` calls (the
server, the directory, the outgoing queue, the listeners, the login throttle, the
logging, and last the spool runner, which retires its previous pipeline itself).
Everything new is built before anything is swapped: a file that does not load, a
mailet that does not init, a certificate that does not read — the error is logged
with its ``file:line`` and the running configuration stays in force.
"""

from __future__ import annotations

import signal
import threading
import weakref
from functools import partial

from twisted.internet import defer, threads
from twisted.logger import Logger

from .api import ConfigurationError

log = Logger(namespace="mailet_mta.reload")

_reloading: weakref.WeakSet = weakref.WeakSet()     # servers with a reload under way


def install_reload(server) -> None:
    """Make SIGHUP reload ``server``'s configuration file (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if not hasattr(signal, "SIGHUP"):
        return
    from twisted.internet import reactor

    def on_hup(_signum, _frame):
        reactor.callFromThread(_reload_logged, server)

    signal.signal(signal.SIGHUP, on_hup)


def _reload_logged(server):
    d = reload_config(server)
    d.addErrback(lambda f: log.failure("configuration reload crashed", f))
    return d


@defer.inlineCallbacks
def reload_config(server):
    """Re-read ``server.config.path`` and apply it; fires True, or False when refused."""
    path = server.config.path
    if not path:
        log.warn("reload: the server runs the embedded default configuration; there is "
                 "no file to re-read (start it with --config FILE)")
        return False
    if server in _reloading:
        log.warn("reload: a reload is already in progress; ignoring this one")
        return False
    _reloading.add(server)
    try:
        log.info("reload: reading {path}", path=path)
        try:
            config = yield threads.deferToThread(_load, path)
            plan = Plan(server, config)
        except ConfigurationError as exc:
            log.error("reload refused, the running configuration stays in force: {error}",
                      error=str(exc))
            return False
        except FileNotFoundError:
            log.error("reload refused, the running configuration stays in force: "
                      "{path} does not exist", path=path)
            return False
        plan.apply()
        log.info("reload: configuration from {path} in force ({n} processors){notes}",
                 path=path, n=len(config.spoolmanager.processors),
                 notes="".join(f"; {note}" for note in plan.notes))
        return True
    finally:
        _reloading.discard(server)


def _load(path):
    from .config import load_config

    return load_config(path)


class Plan:
    """Everything a new configuration needs, built and checked before it is applied:
    ``steps``, the ``reconfigure`` calls of the server's parts, in order."""

    def __init__(self, server, config):
        from .context import MailetContext
        from .logging_setup import check_logging
        from .logging_setup import reconfigure as reconfigure_logging
        from .spool import registry
        from .spool.processor import Pipeline
        from .tls import trust_root

        self.server = server
        self.config = config
        self.notes: list[str] = []
        old = server.config
        if _storage_key(config) != _storage_key(old):
            self.notes.append("storage changed: takes effect at the next restart")
        config.storage = old.storage      # the running database stays the one in use
        check_logging(config.logging)
        self.listeners = self._listeners(old, config)
        self._metrics_note(old, config)
        context = MailetContext(config, server.directory, server.blobs,
                                intake=server.intake, resolver=server.resolver,
                                outgoing=server.outgoing)
        registry.refresh()        # a plugin package installed since the start is found
        pipeline = Pipeline(config.spoolmanager, context, server.observer)
        checks = self._smtp_checks(context)
        roots = trust_root(config.tls_policy.ca_file, config.tls_policy.source)
        self.steps = [
            partial(server.reconfigure, config),
            partial(server.directory.reconfigure, config),
            partial(server.outgoing.reconfigure, config, roots),
            *(partial(svc.reconfigure, cfg, config, prepared)
              for svc, cfg, prepared in self.listeners),
            *(partial(backend.reconfigure_checks, made) for backend, made in checks),
            partial(server.authenticator.throttle.reconfigure, config.auth_throttle),
            lambda: self.notes.extend(reconfigure_logging(config.logging)),
            # Last: the runner may start queued mails at once, on the new pipeline.
            partial(server.spool.reconfigure, config, pipeline),
        ]

    def _listeners(self, old, new) -> list:
        """(service, new listener config, its prepared settings) for each running
        listener."""
        running = {(kind, name): svc for name, kind, svc in self.server.listeners
                   if kind in ("smtp", "pop3", "imap")}
        wanted = {("smtp", c.name): c for c in new.smtpservers}
        wanted.update({("pop3", c.name): c for c in new.pop3servers})
        wanted.update({("imap", c.name): c for c in new.imapservers})
        for key in sorted(set(wanted) - set(running)):
            self.notes.append(f"new {key[0]} listener {key[1]!r}: starts at the next restart")
        for key in sorted(set(running) - set(wanted)):
            self.notes.append(f"{key[0]} listener {key[1]!r} removed: it keeps listening "
                              f"until the next restart")
        out = []
        for key, svc in running.items():
            cfg = wanted.get(key)
            if cfg is None:
                continue
            current = svc.config
            if (cfg.listen, cfg.implicit_tls) != (current.listen, current.implicit_tls):
                self.notes.append(f"{key[0]} listener {key[1]!r} endpoint changed: the new "
                                  f"one is used at the next restart")
                cfg.listen, cfg.implicit_tls = current.listen, current.implicit_tls
            out.append((svc, cfg, svc.prepare(cfg)))   # ConfigurationError if bad
        return out

    def _smtp_checks(self, context) -> list:
        """(SMTP backend, its checks before ``250``) for each running SMTP listener:
        ``dmarcReject`` and ``arcTrustedSealers`` built over the new mailet context."""
        out = []
        for svc, cfg, _prepared in self.listeners:
            backend = getattr(svc.factory, "backend", None)
            if svc.kind == "smtp" and hasattr(backend, "reconfigure_checks"):
                out.append((backend, backend.prepare_checks(cfg, context)))
        return out

    def _metrics_note(self, old, new) -> None:
        before = getattr(old.extra.get("metrics"), "listen", None)
        after = getattr(new.extra.get("metrics"), "listen", None)
        if before != after:
            self.notes.append("metrics.listen changed: takes effect at the next restart")
            if "metrics" in old.extra:
                new.extra["metrics"] = old.extra["metrics"]
            else:
                new.extra.pop("metrics", None)

    # -- the swap (nothing below may fail on a valid plan) ------------------------------
    def apply(self) -> None:
        for step in self.steps:
            step()


def _storage_key(config):
    s = config.storage
    return (s.url, s.data_dir, s.inline_blob_limit, s.pool_size)


