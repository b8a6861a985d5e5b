"""``mailet-mta serve``: run the server in the foreground until SIGTERM/SIGINT.

With ``workers`` above 1 this process becomes the supervisor of that many worker
processes (:mod:`mailet_mta.supervisor`); a worker is this same command, started by
the supervisor with its role in the environment."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from .common import CLIError, add_config_argument, load_config


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the server (default: SQLite under ./var, "
                                     "SMTP 127.0.0.1:2525, submission :5870, POP3 :1110, "
                                     "IMAP :1143)")
    add_config_argument(p)
    p.add_argument("--data-dir", help="override storage.data_dir")
    p.add_argument("--node-name", help="this process's name in a shared database")
    p.add_argument("--log-level", help="override logging.level (debug|info|warn|error)")
    p.set_defaults(func=run)


def _start(server) -> None:
    """Start ``server``; once it listens, settle the heap (mailet_mta.heap)."""
    from ..heap import settle

    server.startService().addCallback(lambda _ready: settle())


def run(args) -> int:
    from twisted.internet import reactor

    from ..api import ConfigurationError
    from ..logging_setup import start_logging
    from ..service import listen_error
    from ..storage.private_files import restrict_umask
    from ..worker_role import ENVIRONMENT, WorkerRole

    restrict_umask()    # the server's files are private (0600/0700) whatever the umask
    worker = WorkerRole.from_environment()
    os.environ.pop(ENVIRONMENT, None)   # not for the processes this one starts
    config = load_config(args)
    if worker is None:
        for warning in config.warnings:
            print(f"mailet-mta: warning: {warning}", file=sys.stderr)
    if args.data_dir:
        config.storage.data_dir = args.data_dir
    if args.log_level:
        config.logging.level = args.log_level
    try:
        start_logging(config.logging)
    except ConfigurationError as exc:
        raise CLIError(f"configuration error: {exc}") from None
    if worker is None and config.worker_count > 1:
        from ..supervisor import Supervisor, serve_arguments

        supervisor = Supervisor(config, serve_arguments(args), config.worker_count,
                                args.node_name)
        with storage_errors(config):
            supervisor.prepare()
        return supervisor.run()
    server = build(config, args.node_name, worker)
    if worker is None or worker.index == 0:     # said once, not by every worker
        _warn(config, server.directory)
    if worker is not None:
        _watch_supervisor(worker)
    reactor.callWhenRunning(_start, server)
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    reactor.run()
    failure = getattr(server, "start_error", None)
    if failure is not None:
        print(f"mailet-mta: cannot listen: {listen_error(failure)}; free the port or "
              f"change the listen string in {_where(config)}", file=sys.stderr)
        return 1
    return 0


def _watch_supervisor(worker) -> None:
    """A worker whose supervisor is gone (killed) stops: nobody else would."""
    from twisted.internet import reactor, task
    from twisted.logger import Logger

    def check():
        if os.getppid() != worker.supervisor_pid:
            Logger(namespace="mailet_mta.service").error(
                "worker {i}: the supervisor (pid {pid}) is gone; stopping",
                i=worker.index, pid=worker.supervisor_pid)
            watch.stop()
            reactor.stop()

    watch = task.LoopingCall(check)
    reactor.callWhenRunning(watch.start, 1.0, now=False)


def _warn(config, directory) -> None:
    from twisted.logger import Logger

    from .startup_warnings import configuration_warnings

    log = Logger(namespace="mailet_mta.service")
    for warning in configuration_warnings(config, directory, postmaster=False):
        log.warn("{warning}", warning=warning)


def build(config, node_name=None, worker=None):
    """The MailServer for ``config``; every error an operator can fix is a CLIError
    naming the key and the file (``serve`` and ``twistd`` both start here)."""
    from ..service import build_server

    with storage_errors(config):
        return build_server(config, node_name, worker)


@contextmanager
def storage_errors(config):
    """Turn what the data directory or the database refuses into one CLIError line."""
    from ..api import ConfigurationError

    try:
        yield
    except ConfigurationError as exc:
        raise CLIError(f"configuration error: {exc}") from None
    except OSError as exc:
        raise CLIError(f"cannot use storage.data_dir {config.storage.data_dir!r}: "
                       f"{exc.strerror or exc}; fix storage.data_dir in {_where(config)}"
                       ) from None
    except Exception as exc:  # the database refused (re-raised when not a driver error)
        if type(exc).__module__.split(".")[0] not in ("sqlalchemy", "psycopg", "sqlite3"):
            raise
        raise CLIError(f"cannot open the database {_safe_url(config)}: "
                       f"{_first_line(exc)}; check storage.url in {_where(config)} and "
                       f"that the database server is running") from None


def _where(config) -> str:
    return config.path or "the configuration"


def _first_line(exc) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _safe_url(config) -> str:
    url = config.storage.url or "(SQLite under storage.data_dir)"
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL: show it as written
        return url
