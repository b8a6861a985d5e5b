"""``mailet-mta serve``: run the server in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from .common import CLIError, add_config_argument, load_config


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the server (default: SQLite under ./var, "
                                     "SMTP 127.0.0.1:2525, submission :5870, POP3 :1110)")
    add_config_argument(p)
    p.add_argument("--data-dir", help="override storage.data_dir")
    p.add_argument("--node-name", help="this process's name in a shared database")
    p.add_argument("--log-level", help="override logging.level (debug|info|warn|error)")
    p.set_defaults(func=run)


def run(args) -> int:
    from twisted.internet import reactor

    from ..api import ConfigurationError
    from ..logging_setup import start_logging
    from ..service import build_server

    config = load_config(args)
    if args.data_dir:
        config.storage.data_dir = args.data_dir
    if args.log_level:
        config.logging.level = args.log_level
    try:
        start_logging(config.logging)
        server = build_server(config, args.node_name)
    except ConfigurationError as exc:
        raise CLIError(f"configuration error: {exc}") from None
    reactor.callWhenRunning(server.startService)
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    reactor.run()
    failure = getattr(server, "start_error", None)
    if failure is not None:
        print(f"mailet-mta: cannot listen: {failure.getErrorMessage()}", file=sys.stderr)
        return 1
    return 0
