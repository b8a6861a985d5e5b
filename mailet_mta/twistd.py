"""The twistd side of mailet-mta: options and the service for ``twistd mailet-mta``.

A configuration the server cannot run with ends twistd with the same one line
``mailet-mta serve`` prints (``mailet-mta: configuration error: FILE:LINE: …``) and
exit status 1, never with a traceback.
"""

from __future__ import annotations

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

    try:
        config = load_config(_ConfigArgs(options["config"]))
        if options["data-dir"]:
            config.storage.data_dir = options["data-dir"]
        return build(config, options["node-name"])
    except CLIError as exc:
        # twistd prints a traceback for anything raised here (a UsageError included):
        # say it in one line and leave.
        print(f"mailet-mta: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


class _ConfigArgs:
    """``--config`` in the shape the command line's load_config reads."""

    def __init__(self, config):
        self.config = config
