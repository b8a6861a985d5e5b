"""Log output: text lines (stdout or a file) or JSON lines, filtered by level.

Every line about a mail carries ``id=<mail name>`` so ``grep id=…`` tells where it went.
"""

from __future__ import annotations

import sys

from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                            globalLogBeginner, jsonFileLogObserver, textFileLogObserver)

from .api import ConfigurationError

# Per-mail trail lines (info level) are skipped entirely when info is filtered out.
trail = True

_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
           "warning": LogLevel.warn, "error": LogLevel.error, "critical": LogLevel.critical}


def make_observer(logging_config):
    level = _LEVELS.get(str(logging_config.level).lower())
    if level is None:
        raise ConfigurationError(f"logging.level must be one of {', '.join(_LEVELS)}, "
                                 f"not {logging_config.level!r}", logging_config.source)
    if logging_config.file:
        try:
            out = open(logging_config.file, "a", encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot open log file: {exc}", logging_config.source) from None
    else:
        out = sys.stdout
    if logging_config.format == "json":
        observer = jsonFileLogObserver(out)
    elif logging_config.format == "text":
        observer = textFileLogObserver(out)
    else:
        raise ConfigurationError("logging.format must be text or json", logging_config.source)
    return FilteringLogObserver(observer, [LogLevelFilterPredicate(defaultLogLevel=level)])


def start_logging(logging_config) -> None:
    global trail
    trail = _LEVELS.get(str(logging_config.level).lower(), LogLevel.info) <= LogLevel.info
    globalLogBeginner.beginLoggingTo([make_observer(logging_config)],
                                     redirectStandardIO=False)
