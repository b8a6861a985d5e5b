"""The twistd side of mailet-mta: options and the service for ``twistd mailet-mta``."""

from __future__ import annotations

from twisted.python import usage


class Options(usage.Options):
    synopsis = "[--config FILE] [--data-dir DIR]"
    optParameters = [
        ["config", "c", None, "configuration file (.yaml or .xml); default: embedded"],
        ["data-dir", "d", None, "override storage.data_dir"],
        ["node-name", None, None, "this process's name in a shared database"],
    ]


def makeService(options):
    from .api import ConfigurationError
    from .config import default_config, load_config
    from .service import build_server
    from .storage.private_files import restrict_umask

    restrict_umask()    # the server's files are private (0600/0700) whatever the umask
    try:
        config = load_config(options["config"]) if options["config"] else default_config()
        if options["data-dir"]:
            config.storage.data_dir = options["data-dir"]
        return build_server(config, options["node-name"])
    except ConfigurationError as exc:
        raise usage.UsageError(f"configuration error: {exc}") from None
