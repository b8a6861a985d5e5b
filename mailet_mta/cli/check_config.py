"""``mailet-mta check-config FILE``: load and fully validate a configuration."""

from __future__ import annotations

from .common import CLIError


def register(sub) -> None:
    p = sub.add_parser("check-config", help="validate a configuration file and exit")
    p.add_argument("file", help="the .yaml or .xml configuration")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import ConfigurationError
    from ..config import load_config
    from ..spool.processor import Pipeline

    try:
        config = load_config(args.file)
        # Build the pipeline with a throw-away context: resolves every mailet and
        # matcher class and runs their init, exactly as start-up would.
        Pipeline(config.spoolmanager, _CheckContext(config))
        _check_tls(config)
    except ConfigurationError as exc:
        raise CLIError(f"configuration error: {exc}") from None
    except FileNotFoundError:
        raise CLIError(f"configuration file not found: {args.file}") from None
    print(f"{args.file}: OK ({len(config.spoolmanager.processors)} processors, "
          f"{len(config.smtpservers)} SMTP and {len(config.pop3servers)} POP3 listeners)")
    return 0


def _check_tls(config) -> None:
    """Read every listener's certificate and key, as start-up will."""
    from ..tls import server_context

    for listener in [*config.smtpservers, *config.pop3servers]:
        if listener.tls is not None:
            server_context(listener.tls)


class _CheckContext:
    """Enough of a context for mailet/matcher init during validation."""

    def __init__(self, config):
        from twisted.logger import Logger

        from ..address import MailAddress

        self.config = config
        self.server_name = config.server_name
        self.postmaster = MailAddress.parse(config.postmaster_address)
        self.log = Logger(namespace="mailet_mta.check")

    def get_attribute(self, name):
        from ..context import server_attributes

        return server_attributes(self.config).get(name)

    def __getattr__(self, name):
        def unavailable(*_a, **_k):
            raise RuntimeError(f"{name} is not available while checking a configuration")

        return unavailable
