"""Log output: text lines (stdout or a file) or JSON lines, filtered by level.

Every line about a mail carries ``id=<mail name>`` so ``grep id=…`` tells where it went.
The lines that end a stage of a mail read like Postfix's, so the same greps work::

    id=… client=[192.0.2.1] helo=mx.example.org from=<a@example.org> size=1234 nrcpt=1 status=queued
    id=… processor=transport from=<a@example.org> to=b@example.com
    id=… from=<a@example.org> to=<b@example.com> relay=local delay=0.03 status=sent (…)

Never logged: passwords (AUTH payloads stay inside the SASL code) and message bodies.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
    textFileLogObserver,
)

from .api import ConfigurationError
from .spool.observer import PipelineObserver

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
            # 0600 whatever the umask: the log names users, clients and addresses.
            fd = os.open(logging_config.file,
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            out = os.fdopen(fd, "a", encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot open log file: {exc}",
                                     logging_config.source) from None
    else:
        out = sys.stdout
    if logging_config.format == "json":
        observer = JSONLinesObserver(out)
    elif logging_config.format == "text":
        observer = textFileLogObserver(out)
    else:
        raise ConfigurationError("logging.format must be text or json", logging_config.source)
    global _predicate
    _predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    return FilteringLogObserver(observer, [_predicate])


class JSONLinesObserver:
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``namespace``,
    ``message`` (the rendered text line) and every field of the event as a plain string,
    number, boolean or null — what ``jq``, Loki or Elasticsearch read without help.
    A failure adds ``traceback``."""

    def __init__(self, out):
        self.out = out

    def __call__(self, event: dict) -> None:
        record = {
            "time": datetime.fromtimestamp(event.get("log_time") or time.time(),
                                           UTC).isoformat(timespec="milliseconds"),
            "level": getattr(event.get("log_level"), "name", "info"),
            "namespace": event.get("log_namespace", "-"),
            "message": formatEvent(event),
        }
        for key, value in event.items():
            if not key.startswith("log_") and key not in record:
                record[key] = _plain(value)
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.out.flush()


def _plain(value):
    """A log field as JSON: numbers, booleans and None as they are, the rest as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


_predicate: LogLevelFilterPredicate | None = None
_started_with = None


def start_logging(logging_config) -> None:
    global trail, _started_with
    trail = _LEVELS.get(str(logging_config.level).lower(), LogLevel.info) <= LogLevel.info
    globalLogBeginner.beginLoggingTo([make_observer(logging_config)],
                                     redirectStandardIO=False)
    _started_with = (logging_config.file, logging_config.format)


def check_logging(logging_config) -> None:
    """Raise ConfigurationError for a level or format this module does not know."""
    if str(logging_config.level).lower() not in _LEVELS:
        raise ConfigurationError(f"logging.level must be one of {', '.join(_LEVELS)}, "
                                 f"not {logging_config.level!r}", logging_config.source)
    if logging_config.format not in ("text", "json"):
        raise ConfigurationError("logging.format must be text or json", logging_config.source)


def reconfigure(logging_config) -> list[str]:
    """Apply a reloaded ``logging`` section: the level changes now; a new file or format
    needs a restart (returned as notes for the reload log)."""
    global trail
    check_logging(logging_config)
    level = _LEVELS[str(logging_config.level).lower()]
    if _predicate is not None:
        _predicate.defaultLogLevel = level
        trail = level <= LogLevel.info
    notes = []
    if _started_with is not None and _started_with != (logging_config.file,
                                                       logging_config.format):
        notes.append("logging.file/format changed: takes effect at the next restart")
    return notes


# -- the per-mail summary lines ------------------------------------------------------------
mail_log = Logger(namespace="mailet_mta.mail")
spool_log = Logger(namespace="mailet_mta.spool")


class TrailObserver(PipelineObserver):
    """The per-mail trail of the pipeline as info lines (while info is logged)."""

    timed = False

    @property
    def trail(self) -> bool:
        return trail

    def entered(self, mail, processor: str) -> None:
        spool_log.info("id={id} processor={proc} from=<{sender}> to={rcpts}", id=mail.name,
                       proc=processor, sender=mail.sender or "",
                       rcpts=",".join(str(r) for r in mail.recipients))

    def ghosted(self, mail, processor: str) -> None:
        spool_log.info("id={id} ghosted in {proc}", id=mail.name, proc=processor)

    def mailet_changed(self, label: str, mail) -> None:
        spool_log.info("id={id} {label} → state={state} rcpts={n}", id=mail.name,
                       label=label, state=mail.state, n=len(mail.recipients))


def log_queued(listener: str, session, envelope, size: int) -> None:
    """The line of a mail accepted over SMTP (after its spool row is committed)."""
    from . import metrics

    metrics.smtp_accepted(listener)
    if not trail:
        return
    auth = f" sasl_username={session.auth_user}" if session.auth_user else ""
    mail_log.info(
        "id={id} listener={listener} client=[{ip}] helo={helo}{auth} from=<{sender}> "
        "size={size} nrcpt={n} status=queued",
        id=envelope.name, listener=listener, ip=session.remote_ip,
        helo=_token(session.helo), auth=auth, sender=envelope.sender or "", size=size,
        n=len(envelope.recipients))


def log_local_delivery(user: str, mail, folder: str = "INBOX") -> None:
    """The line of a mail stored in a local mailbox (after the store is committed)."""
    from . import metrics

    metrics.delivery("local", "sent")
    if not trail:
        return
    mail_log.info(
        "id={id} from=<{sender}> to=<{user}> relay=local delay={delay:.2f} "
        "status=sent (delivered to mailbox {folder})", id=mail.name,
        sender=mail.sender or "", user=user, folder=folder,
        delay=max(0.0, time.time() - (mail.last_updated or time.time())))


def log_delivery(mail_name: str, sender, recipient, relay: str, delay: float,
                 status: str, reply: str) -> None:
    """A remote delivery attempt's line: ``relay=mx.example.net[192.0.2.7]:25
    status=sent|deferred|bounced (250 2.0.0 Ok)``; counts the outcome too."""
    from . import metrics

    metrics.delivery("remote", status)
    log = mail_log.info if status == "sent" else mail_log.warn
    log("id={id} from=<{sender}> to=<{rcpt}> relay={relay} delay={delay:.2f} "
        "status={status} ({reply})", id=mail_name, sender=sender or "", rcpt=recipient,
        relay=relay, delay=delay, status=status, reply=" ".join(str(reply).split()))


def _token(text) -> str:
    """A client-chosen word (HELO) as one grep-able token."""
    if not text:
        return "none"
    return "".join(c if 32 < ord(c) < 127 else "?" for c in str(text))[:255]
