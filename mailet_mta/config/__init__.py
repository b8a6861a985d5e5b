"""Configuration: YAML or James-style XML → one typed, checked :class:`ServerConfig`.

``load_config(path)`` reads a file (.yaml/.yml/.xml), ``load_config_text(text, fmt)``
a string, and ``default_config()`` the embedded default. Every error is a
:class:`~mailet_mta.api.ConfigurationError` whose text starts with ``file:line``.
"""

from .loader import default_config, load_config, load_config_text
from .model import (
    DNSConfig,
    IMAPServerConfig,
    LoggingConfig,
    MailetSpec,
    MatcherSpec,
    POP3ServerConfig,
    ProcessorSpec,
    ServerConfig,
    SMTPServerConfig,
    SpoolManagerConfig,
    StorageConfig,
    TLSConfig,
)
from .validate import validate_config

__all__ = [
    "load_config", "load_config_text", "default_config", "validate_config",
    "ServerConfig", "SpoolManagerConfig", "ProcessorSpec", "MailetSpec", "MatcherSpec",
    "SMTPServerConfig", "POP3ServerConfig", "IMAPServerConfig", "TLSConfig", "StorageConfig",
    "DNSConfig",
    "LoggingConfig",
]
