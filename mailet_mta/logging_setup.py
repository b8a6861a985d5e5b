"""Log output: text lines (stdout or a file) or JSON lines, filtered by level.

Every line about a mail carries ``id=<mail name>`` so ``grep id=…`` tells where it went.
At ``info`` a mail leaves one line when it is accepted and one per delivery (or per
record kept in a repository), read like Postfix's so the same greps work::

    id=… listener=smtp client=[192.0.2.1] helo=mx.example.org from=<a@example.org>
         size=1234 nrcpt=1 status=queued
    id=… from=<a@example.org> to=<b@example.com> relay=local delay=0.03 status=sent (…)
    id=… from=<a@example.org> to=<c@example.net> relay=mx.example.net[192.0.2.7]:25
         delay=1.20 status=deferred (…)
    id=… from=<a@example.org> to=<d@example.com> relay=repository delay=0.01
         status=kept (repository relay-denied)

(each on one line).
At ``debug`` the processors it ran through are logged as well
(``id=… processor=transport from=<…> to=…``).

These per-mail lines do not go through Twisted's event formatting: they are built only
when their level is logged, as one f-string, and written by :class:`LogOutput` with a
timestamp formatted once per second. Everything else (start-up, errors, tracebacks)
is a Twisted log event, rendered by the same output in the same format.

Never logged: passwords (AUTH payloads stay inside the SASL code) and message bodies.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import sys
import threading
import time
from datetime import UTC, datetime

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    formatEventAsClassicLogText,
    globalLogBeginner,
)

from .api import ConfigurationError
from .spool.observer import PipelineObserver

# Characters of log lines that may wait for the writer thread before new ones are
# dropped (and counted): about 20,000 lines of a mail's size.
MAX_PENDING = 4 * 1024 * 1024
# Seconds the writer gathers lines before it writes them (a line's delay at most).
GATHER = 0.05
# The largest write that a pipe takes whole (POSIX: at least 512; 4096 on Linux).
_ATOMIC_WRITE = getattr(select, "PIPE_BUF", 512)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
           "warning": LogLevel.warn, "error": LogLevel.error, "critical": LogLevel.critical}
_RANK = {LogLevel.debug: 0, LogLevel.info: 1, LogLevel.warn: 2, LogLevel.error: 3,
         LogLevel.critical: 4}

# What the per-mail lines check before building anything: the info lines (accepted,
# delivered, kept) and the debug trail (the processors a mail ran through). Until
# start_logging() runs (twistd, tests in one process) both go to Twisted's log.
info_enabled = True
warn_enabled = True
trail = True


def _set_level(level: LogLevel) -> None:
    global info_enabled, warn_enabled, trail
    info_enabled = _RANK[level] <= _RANK[LogLevel.info]
    warn_enabled = _RANK[level] <= _RANK[LogLevel.warn]
    trail = level == LogLevel.debug


def _level_of(logging_config) -> LogLevel:
    level = _LEVELS.get(str(logging_config.level).lower())
    if level is None:
        raise ConfigurationError(f"logging.level must be one of {', '.join(_LEVELS)}, "
                                 f"not {logging_config.level!r}", logging_config.source)
    return level


def make_observer(logging_config):
    """The filtered Twisted observer writing to the configured file in its format;
    it also becomes the output of the per-mail lines (:data:`output`)."""
    global _predicate, output
    level = _level_of(logging_config)
    if logging_config.format not in ("text", "json"):
        raise ConfigurationError("logging.format must be text or json", logging_config.source)
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
    output = LogOutput(out, json_lines=logging_config.format == "json")
    _predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    _set_level(level)
    return FilteringLogObserver(output, [_predicate])


class LogOutput:
    """The log file (or standard output): one line per event, text or JSON.

    Text lines read ``<local time> [<namespace>#<level>] <message>``, as Twisted's
    text log does. A JSON line is one object: ``time`` (ISO 8601, UTC), ``level``,
    ``namespace``, ``message`` (the text line's message) and every field of the
    event as a plain string, number, boolean or null — what ``jq``, Loki or
    Elasticsearch read without help; a failure adds ``traceback``.

    Called as a Twisted observer for ordinary events, and through :meth:`line` by the
    per-mail lines, from any thread. A line is formatted by its caller and queued; the
    ``log-writer`` thread writes what is queued, in order, so neither the reactor nor a
    database thread ever waits for the disk or for a reader of standard output
    (journald, a pipe). The writer gathers lines for :data:`GATHER` seconds and
    writes them together, so a line reaches the file within about 50 ms; a process
    killed with SIGKILL may lose the lines of that moment (never a mail), a normal exit
    writes them all (:meth:`close`, run at exit).

    Bounds: at most ``max_pending`` characters wait for the writer. Past that (the
    disk or the reader of the pipe stalled) new lines are dropped and counted, and
    once the writer catches up it writes one ``mailet_mta.log#warn`` line saying how
    many were lost. Lines go out in writes of at most ``PIPE_BUF`` octets, cut between
    lines, so the workers sharing one pipe never interleave inside a line.
    """

    def __init__(self, out, *, json_lines: bool = False, max_pending: int = MAX_PENDING):
        self.out = out
        self.json_lines = json_lines
        self.max_pending = max_pending
        self._second = -1
        self._local = ""            # the text timestamp of _second
        self._utc = ""              # the JSON timestamp of _second, without fraction
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._pending_size = 0
        self._dropped = 0
        self._queued = 0            # lines queued, ever
        self._written = 0           # lines taken and written by the writer, ever
        self._done = threading.Condition(self._lock)
        self._wake = threading.Event()      # set by the first line while the writer idles
        self._idle = True                   # the writer waits for _wake (under _lock)
        self._hurry = threading.Event()     # flush()/close(): write now, do not gather
        self._thread: threading.Thread | None = None
        self._stopping = False      # close() asked the writer to end after this batch
        self._closed = False        # lines are written by their caller from now on

    def _stamp(self, when: float) -> int:
        second = int(when)
        if second != self._second:
            self._local = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(second))
            self._utc = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return second

    def _write(self, text: str) -> None:
        """Queue one line for the writer thread (written at once after :meth:`close`)."""
        with self._lock:
            if self._closed:
                self._emit([text])
                return
            if self._pending_size + len(text) > self.max_pending:
                self._dropped += 1
                return
            self._pending.append(text)
            self._pending_size += len(text)
            self._queued += 1
            if not self._idle:
                return              # the writer is gathering: it takes this line
            self._idle = False
            if self._thread is None:
                self._start_writer()
        self._wake.set()

    def _start_writer(self) -> None:
        try:                        # what was printed before goes out first
            self.out.flush()
        except (OSError, ValueError):
            pass
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Wait for a first line; then, every GATHER seconds, write what came until a
        round finds nothing. The callers wake this thread once per busy spell, not once
        per line: a wake per line would hand the GIL back and forth with the reactor
        thousands of times a second."""
        while True:
            self._wake.wait()
            while True:
                self._hurry.wait(GATHER)
                self._hurry.clear()
                with self._lock:
                    batch, self._pending, self._pending_size = self._pending, [], 0
                    dropped, self._dropped = self._dropped, 0
                    stopping = self._stopping
                    if not batch and not dropped:
                        self._idle = True
                        self._wake.clear()
                taken = len(batch)
                if dropped:
                    batch.append(self._dropped_line(dropped))
                if batch:
                    self._emit(batch)
                with self._done:
                    self._written += taken
                    self._done.notify_all()
                if stopping:
                    return
                if not batch:
                    break

    def _dropped_line(self, count: int) -> str:
        now = time.time()
        self._stamp(now)
        message = f"{count} log lines dropped: the log output did not keep up"
        if not self.json_lines:
            return f"{self._local} [mailet_mta.log#warn] {message}\n"
        return json.dumps({"time": self._json_time(now), "level": "warn",
                           "namespace": "mailet_mta.log", "message": message,
                           "dropped": count}) + "\n"

    def _emit(self, lines: list[str]) -> None:
        """Write ``lines`` (each ending in a newline) to the output, in writes of at
        most PIPE_BUF octets cut between lines. A write error loses these lines, not
        the writer."""
        try:
            fd = self.out.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        try:
            if fd is None:          # not a file (a test's StringIO)
                self.out.write("".join(lines))
                self.out.flush()
                return
            chunk: list[bytes] = []
            size = 0
            for line in lines:
                data = line.encode("utf-8", "replace")
                if chunk and size + len(data) > _ATOMIC_WRITE:
                    _write_all(fd, b"".join(chunk))
                    chunk, size = [], 0
                chunk.append(data)
                size += len(data)
            if chunk:
                _write_all(fd, b"".join(chunk))
        except (OSError, ValueError):
            pass

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line queued before this call is written; False if that
        took longer than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._done:
            target = self._queued
            while self._written < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._hurry.set()
                self._done.wait(min(left, GATHER))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop the writer; later lines are written at once
        by their caller (the process is ending). Waits ``timeout`` seconds at most for
        the writer: lines still queued behind a stalled output are then dropped rather
        than holding up the exit."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            thread = self._thread
        self._hurry.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            self._closed = True
            rest, self._pending, self._pending_size = self._pending, [], 0
            if self._dropped:
                rest.append(self._dropped_line(self._dropped))
                self._dropped = 0
            if rest and (thread is None or not thread.is_alive()):
                self._emit(rest)

    def line(self, level: str, namespace: str, message: str, fields: dict) -> None:
        """Write one per-mail line; ``fields`` are its parts for JSON."""
        now = time.time()
        self._stamp(now)
        if not self.json_lines:
            self._write(f"{self._local} [{namespace}#{level}] {message}\n")
            return
        record = {"time": self._json_time(now), "level": level, "namespace": namespace,
                  "message": message}
        for key, value in fields.items():
            record.setdefault(key, _plain(value))
        self._write(json.dumps(record, ensure_ascii=False) + "\n")

    def _json_time(self, when: float) -> str:
        return f"{self._utc}.{int(when % 1 * 1000):03d}+00:00"

    def _local_time(self, when: float | None) -> str:
        if when is None:
            return "-"
        self._stamp(when)
        return self._local

    def __call__(self, event: dict) -> None:
        """A Twisted log event (already filtered by level)."""
        if not self.json_lines:
            text = formatEventAsClassicLogText(event, formatTime=self._local_time)
            if text:
                self._write(text)
            return
        when = event.get("log_time") or time.time()
        self._stamp(when)
        record = {
            "time": self._json_time(when),
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
        self._write(json.dumps(record, ensure_ascii=False) + "\n")


def _plain(value):
    """A log field as JSON: numbers, booleans and None as they are, the rest as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


_predicate: LogLevelFilterPredicate | None = None
_started_with = None
output: LogOutput | None = None     # set by start_logging(); None: Twisted's log


def start_logging(logging_config) -> None:
    global _started_with
    globalLogBeginner.beginLoggingTo([make_observer(logging_config)],
                                     redirectStandardIO=False)
    if output is not None:
        atexit.register(output.close)
    _started_with = (logging_config.file, logging_config.format)


def check_logging(logging_config) -> None:
    """Raise ConfigurationError for a level or format this module does not know."""
    _level_of(logging_config)
    if logging_config.format not in ("text", "json"):
        raise ConfigurationError("logging.format must be text or json", logging_config.source)


def reconfigure(logging_config) -> list[str]:
    """Apply a reloaded ``logging`` section: the level changes now; a new file or format
    needs a restart (returned as notes for the reload log)."""
    check_logging(logging_config)
    level = _LEVELS[str(logging_config.level).lower()]
    if _predicate is not None:
        _predicate.defaultLogLevel = level
        _set_level(level)
    notes = []
    if _started_with is not None and _started_with != (logging_config.file,
                                                       logging_config.format):
        notes.append("logging.file/format changed: takes effect at the next restart")
    return notes


# -- the per-mail lines ----------------------------------------------------------------------
MAIL = "mailet_mta.mail"
SPOOL = "mailet_mta.spool"
_twisted_logs = {MAIL: Logger(namespace=MAIL), SPOOL: Logger(namespace=SPOOL)}


def _emit(level: str, namespace: str, message: str, fields: dict) -> None:
    """Write a per-mail line whose level is logged (the caller checked)."""
    if output is not None:
        output.line(level, namespace, message, fields)
        return
    # Not started by start_logging (twistd, a test in one process): Twisted's log.
    log = _twisted_logs[namespace]
    log.emit(LogLevel.levelWithName(level), "{log_text}", log_text=message, **fields)


class TrailObserver(PipelineObserver):
    """The processors each mail runs through, as debug lines (while debug is logged)."""

    timed = False

    @property
    def trail(self) -> bool:
        return trail

    def entered(self, mail, processor: str) -> None:
        sender = mail.sender or ""
        rcpts = ",".join([str(r) for r in mail.recipients])
        _emit("debug", SPOOL, f"id={mail.name} processor={processor} from=<{sender}> "
              f"to={rcpts}", {"id": mail.name, "processor": processor, "sender": sender,
                              "rcpts": rcpts})

    def ghosted(self, mail, processor: str) -> None:
        _emit("debug", SPOOL, f"id={mail.name} ghosted in {processor}",
              {"id": mail.name, "processor": processor})

    def mailet_changed(self, label: str, mail) -> None:
        n = len(mail.recipients)
        _emit("debug", SPOOL, f"id={mail.name} {label} → state={mail.state} rcpts={n}",
              {"id": mail.name, "label": label, "state": mail.state, "n": n})


def log_queued(listener: str, session, envelope, size: int) -> None:
    """The line of a mail accepted over SMTP (after its spool row is committed)."""
    from . import metrics

    metrics.smtp_accepted(listener)
    if not info_enabled:
        return
    auth = f" sasl_username={session.auth_user}" if session.auth_user else ""
    name, sender, ip = envelope.name, envelope.sender or "", session.remote_ip
    helo, n = _token(session.helo), len(envelope.recipients)
    _emit("info", MAIL, f"id={name} listener={listener} client=[{ip}] helo={helo}{auth} "
          f"from=<{sender}> size={size} nrcpt={n} status=queued",
          {"id": name, "listener": listener, "ip": ip, "helo": helo,
           "sasl_username": session.auth_user, "sender": sender, "size": size, "n": n,
           "status": "queued"})


def _delay(mail) -> float:
    """Seconds since ``mail`` was spooled (its last update), as Postfix's ``delay=``."""
    return max(0.0, time.time() - (mail.last_updated or time.time()))


def log_local_delivery(user: str, mail, folder: str = "INBOX") -> None:
    """The line of a mail stored in a local mailbox (after the store is committed)."""
    from . import metrics

    metrics.delivery("local", "sent")
    if not info_enabled:
        return
    sender, delay = mail.sender or "", _delay(mail)
    _emit("info", MAIL, f"id={mail.name} from=<{sender}> to=<{user}> relay=local "
          f"delay={delay:.2f} status=sent (delivered to mailbox {folder})",
          {"id": mail.name, "sender": sender, "user": user, "relay": "local",
           "delay": round(delay, 3), "status": "sent", "folder": folder})


def log_kept(repository: str, mail) -> None:
    """The line of a mail kept in a repository (relay-denied, address-error, error…):
    where it ends when it is not delivered (after the store is committed)."""
    if not info_enabled:
        return
    sender, delay = mail.sender or "", _delay(mail)
    rcpts = ",".join([f"<{r}>" for r in mail.recipients])
    _emit("info", MAIL, f"id={mail.name} from=<{sender}> to={rcpts} relay=repository "
          f"delay={delay:.2f} status=kept (repository {repository})",
          {"id": mail.name, "sender": sender, "rcpts": rcpts, "relay": "repository",
           "delay": round(delay, 3), "status": "kept", "repository": repository})


def log_delivery(mail_name: str, sender, recipient, relay: str, delay: float,
                 status: str, reply: str) -> None:
    """A remote delivery attempt's line: ``relay=mx.example.net[192.0.2.7]:25
    status=sent|deferred|bounced (250 2.0.0 Ok)`` (info when sent, else warn); counts
    the outcome too."""
    from . import metrics

    metrics.delivery("remote", status)
    if not (info_enabled if status == "sent" else warn_enabled):
        return
    sender = sender or ""
    reply = " ".join(str(reply).split())
    _emit("info" if status == "sent" else "warn", MAIL,
          f"id={mail_name} from=<{sender}> to=<{recipient}> relay={relay} "
          f"delay={delay:.2f} status={status} ({reply})",
          {"id": mail_name, "sender": sender, "rcpt": recipient, "relay": relay,
           "delay": round(delay, 3), "status": status, "reply": reply})


def _token(text) -> str:
    """A client-chosen word (HELO) as one grep-able token."""
    if not text:
        return "none"
    if text.isascii() and text.isprintable() and " " not in text:
        return text[:255]
    return "".join(c if 32 < ord(c) < 127 else "?" for c in str(text))[:255]
