"""The twistd side of mailet-mta: options and the service for ``twistd mailet-mta``.

A configuration the server cannot run with, or a listener that cannot bind, ends
twistd with the same one line ``mailet-mta serve`` prints (``mailet-mta: configuration
error: FILE:LINE: …``, ``mailet-mta: cannot listen: …``) and exit status 1, never with
a traceback.

twistd runs the server in one process whatever ``workers`` says: the supervisor and
its worker processes are ``mailet-mta serve``'s (twistd has its own process model —
daemonising, its pid file — that a supervisor of processes would fight).
"""

from __future__ import annotations

import atexit
import os
import sys

from twisted.python import usage


class Options(usage.Options):
    synopsis = "[--config FILE] [--data-dir DIR]"
    optParameters = [
        ["config", "c", None, "configuration file (.yaml or .xml); default: embedded"],
        ["data-dir", "d", None, "override storage.data_dir"],
        ["node-name", None, None, "this process's name in a shared database"],
    ]


def makeService(options):
    from .cli.common import CLIError, load_config
    from .cli.serve import build
    from .storage.private_files import restrict_umask

    restrict_umask()    # the server's files are private (0600/0700) whatever the umask
    try:
        config = load_config(_ConfigArgs(options["config"]))
        if options["data-dir"]:
            config.storage.data_dir = options["data-dir"]
        server = build(config, options["node-name"])
        if config.worker_count > 1:
            from twisted.logger import Logger

            Logger(namespace="mailet_mta.twistd").info(
                "twistd runs one process: workers ({n}) applies to mailet-mta serve",
                n=config.worker_count)
    except CLIError as exc:
        # twistd prints a traceback for anything raised here (a UsageError included):
        # say it in one line and leave.
        print(f"mailet-mta: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    atexit.register(_exit_1_if_not_listening, server, config)
    return server


def _exit_1_if_not_listening(server, config) -> None:
    """At interpreter exit, after twistd's own clean-up (pid file, logs): a server that
    stopped because a listener could not bind says so in one line and exits 1, as
    ``mailet-mta serve`` does (twistd itself has no way to set the exit status)."""
    from .service import listen_error

    failure = getattr(server, "start_error", None)
    if failure is None:
        return
    # twistd has pointed sys.stdout/stderr into its log, closed by now: the real stderr.
    print(f"mailet-mta: cannot listen: {listen_error(failure)}; free the port or change "
          f"the listen string in {config.path or 'the configuration'}", file=sys.__stderr__)
    sys.__stdout__.flush()
    sys.__stderr__.flush()
    os._exit(1)


class _ConfigArgs:
    """``--config`` in the shape the command line's load_config reads."""

    def __init__(self, config):
        self.config = config
