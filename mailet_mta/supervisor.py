"""``serve`` with ``workers`` above 1: a supervisor and its worker processes.

The supervisor does no mail work. It prepares the data directory and the database
(schema upgrade, leases and left-overs of a previous run), opens every listener of the
configuration once (:func:`mailet_mta.service.configured_listeners`; the bound
addresses are shared with ``SO_REUSEPORT``, see :mod:`mailet_mta.shared_sockets`), and
starts the workers: each is ``mailet-mta serve`` with the same arguments, the bound
sockets inherited and its role in ``MAILET_MTA_WORKER``
(:mod:`mailet_mta.worker_role`). Each worker is a complete server and a node of the
database (``<node>-w<index>``); they share the spool by leases, as nodes sharing
PostgreSQL do.

Once every worker listens, the supervisor writes ``<data_dir>/listeners.json`` with its
own pid, the listeners and the workers (``mailet-mta status`` reads it). Then it

- restarts a worker that dies, after a back-off that doubles while the worker keeps
  dying young (0.5 s up to 30 s) and at most :data:`MAX_RESTARTS_PER_MINUTE` times a
  minute per worker, each death and restart logged;
- forwards SIGHUP (reload the configuration) to every running worker;
- on SIGTERM or SIGINT forwards SIGTERM (stop accepting, finish the sessions and the
  mails in flight, exit), waits for every worker, kills one still running after
  :data:`STOP_TIMEOUT` seconds, removes listeners.json and exits.

A worker that exits before it ever listened at the first start (a port taken, a
database that refuses) stops the whole start with status 1, its own message printed
above.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from twisted.logger import Logger

from .worker_role import ENVIRONMENT, WorkerRole

log = Logger(namespace="mailet_mta.supervisor")

TICK = 0.2                      # seconds between looks at the workers
FIRST_BACKOFF = 0.5             # seconds before restarting a worker that died
MAX_BACKOFF = 30.0
STABLE_AFTER = 30.0             # a worker up this long has its back-off reset
MAX_RESTARTS_PER_MINUTE = 10    # per worker
STOP_TIMEOUT = 60.0             # seconds a worker has to stop before SIGKILL
MAX_REPORT = 64 * 1024          # bytes of a worker's ready line


class WorkerSlot:
    """One worker position: the process in it now and its restart history."""

    def __init__(self, index: int):
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.pipe: int | None = None
        self.buffer = b""
        self.report: dict | None = None     # the ready line of the current process
        self.started = 0.0
        self.ever_ready = False
        self.next_start: float | None = 0.0
        self.backoff = FIRST_BACKOFF
        self.restarts: deque[float] = deque(maxlen=MAX_RESTARTS_PER_MINUTE)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """Runs ``count`` workers of ``config`` until SIGTERM; see the module docstring."""

    def __init__(self, config, serve_arguments: list[str], count: int,
                 node_name: str | None = None):
        from .service import default_node_name

        self.config = config
        self.count = count
        self.data_dir = Path(config.storage.data_dir)
        self.node_name = node_name or default_node_name(self.data_dir)
        self.command = [sys.executable, "-m", "mailet_mta", "serve", *serve_arguments]
        self.slots = [WorkerSlot(i) for i in range(count)]
        self.sockets: dict = {}
        self.pending_signals: set[int] = set()
        self.stopping = False
        self.stop_deadline = 0.0
        self.failed: str | None = None
        self.environment = dict(os.environ)

    # -- the whole run -----------------------------------------------------------------
    def run(self) -> int:
        """Open the listeners, start the workers and watch them until told to stop
        (call :meth:`prepare` first); the exit status (0 after a stop, 1 when the
        first start failed)."""
        self.open_listeners()
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        log.info("supervisor {pid}: starting {n} workers", pid=os.getpid(), n=self.count)
        try:
            self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in self.sockets.values():
                sock.close()
            self._remove_listeners_file()
        return 1 if self.failed else 0

    def prepare(self) -> None:
        """Once for all workers: the schema, and what a previous run left behind."""
        from .storage.private_files import make_private_dir

        make_private_dir(self.data_dir)
        prepare_database(self.config, self.node_name)
        self._metrics_directory()

    def open_listeners(self) -> None:
        from .api import ConfigurationError
        from .cli.common import CLIError
        from .service import configured_listeners
        from .shared_sockets import reserve_address

        for key, listen, source in configured_listeners(self.config):
            try:
                self.sockets[key] = reserve_address(listen, key, source)
            except ConfigurationError as exc:
                raise CLIError(f"configuration error: {exc}") from None
            except OSError as exc:
                raise CLIError(f"cannot listen: {key} on {listen}: {exc.strerror or exc}; "
                               f"free the port or change the listen string in "
                               f"{self.config.path or 'the configuration'}") from None

    def _metrics_directory(self) -> None:
        """With /metrics served, the workers' counters go to one directory that any
        worker answering a scrape adds up (prometheus_client's multiprocess mode)."""
        from .metrics import MULTIPROCESS_ENVIRONMENT, metrics_listen

        if not metrics_listen(self.config):
            return
        directory = self.data_dir / "run" / "metrics"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, mode=0o700)
        self.environment[MULTIPROCESS_ENVIRONMENT] = str(directory)

    # -- watching ----------------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        self.pending_signals.add(signum)

    def _watch(self) -> None:
        while True:
            self._handle_signals()
            pipes = {slot.pipe: slot for slot in self.slots if slot.pipe is not None}
            try:
                readable, _, _ = select.select(list(pipes), [], [], TICK)
            except InterruptedError:
                readable = []
            for fd in readable:
                self._read_report(pipes[fd])
            self._reap()
            if self.stopping:
                if not any(slot.alive for slot in self.slots):
                    return
                if time.monotonic() > self.stop_deadline:
                    self._kill_remaining()
            else:
                self._start_due()

    def _handle_signals(self) -> None:
        pending, self.pending_signals = self.pending_signals, set()
        if signal.SIGHUP in pending and not self.stopping:
            running = [slot for slot in self.slots if slot.alive and slot.report]
            log.info("SIGHUP: reloading the configuration in {n} workers", n=len(running))
            for slot in running:
                self._send(slot, signal.SIGHUP)
        if pending & {signal.SIGTERM, signal.SIGINT}:
            self.stop("a signal")

    def stop(self, why: str) -> None:
        """Stop every worker (SIGTERM) and leave the watch once all have exited."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + STOP_TIMEOUT
        log.info("stopping {n} workers ({why})", n=self.count, why=why)
        for slot in self.slots:
            slot.next_start = None
            if slot.alive:
                self._send(slot, signal.SIGTERM)

    def _kill_remaining(self) -> None:
        for slot in self.slots:
            if slot.alive:
                log.warn("worker {i} (pid {pid}) still runs {t:.0f}s after SIGTERM; "
                         "killing it", i=slot.index, pid=slot.proc.pid, t=STOP_TIMEOUT)
                self._send(slot, signal.SIGKILL)
        self.stop_deadline = time.monotonic() + STOP_TIMEOUT

    @staticmethod
    def _send(slot: WorkerSlot, sig: int) -> None:
        try:
            os.kill(slot.proc.pid, sig)
        except ProcessLookupError:
            pass

    # -- starting and restarting -------------------------------------------------------
    def _start_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.proc is None and slot.next_start is not None and now >= slot.next_start:
                self._start(slot)

    def _start(self, slot: WorkerSlot) -> None:
        read_end, write_end = os.pipe()
        role = WorkerRole(index=slot.index, count=self.count, supervisor_pid=os.getpid(),
                          ready_fd=write_end,
                          sockets={k: s.fileno() for k, s in self.sockets.items()})
        env = dict(self.environment)
        env[ENVIRONMENT] = role.to_environment()
        try:
            slot.proc = subprocess.Popen(self.command, env=env,
                                         pass_fds=(write_end, *role.sockets.values()))
        finally:
            os.close(write_end)
        slot.pipe, slot.buffer, slot.report = read_end, b"", None
        slot.started = time.monotonic()
        slot.next_start = None
        log.info("worker {i} started (pid {pid})", i=slot.index, pid=slot.proc.pid)

    def _read_report(self, slot: WorkerSlot) -> None:
        try:
            data = os.read(slot.pipe, MAX_REPORT)
        except OSError:
            data = b""
        slot.buffer = (slot.buffer + data)[:MAX_REPORT]
        if data and b"\n" not in slot.buffer:
            return
        os.close(slot.pipe)
        slot.pipe = None
        try:
            slot.report = json.loads(slot.buffer.split(b"\n", 1)[0])
        except ValueError:
            return                      # no report: the worker died while starting
        slot.ever_ready = True
        log.info("worker {i} (pid {pid}, node {node}) is listening", i=slot.index,
                 pid=slot.report.get("pid"), node=slot.report.get("node"))
        if all(s.report for s in self.slots):
            self._write_listeners_file()

    def _reap(self) -> None:
        for slot in self.slots:
            if slot.proc is None or slot.proc.poll() is None:
                continue
            code, pid = slot.proc.returncode, slot.proc.pid
            if slot.pipe is not None:
                self._read_report(slot)
            slot.proc, slot.report = None, None
            self._process_gone(pid)
            if self.stopping:
                log.info("worker {i} (pid {pid}) stopped ({how})", i=slot.index, pid=pid,
                         how=_exit_text(code))
                continue
            if not slot.ever_ready:
                self.failed = f"worker {slot.index} {_exit_text(code)} before it listened"
                log.critical("{what}; stopping", what=self.failed)
                self.stop("a worker could not start")
                continue
            self._schedule_restart(slot, pid, code)

    def _schedule_restart(self, slot: WorkerSlot, pid: int, code: int) -> None:
        now = time.monotonic()
        if now - slot.started >= STABLE_AFTER:
            slot.backoff = FIRST_BACKOFF
        delay = slot.backoff
        slot.backoff = min(MAX_BACKOFF, slot.backoff * 2)
        if len(slot.restarts) == MAX_RESTARTS_PER_MINUTE and now - slot.restarts[0] < 60:
            delay = max(delay, 60 - (now - slot.restarts[0]))
            log.warn("worker {i} restarted {n} times within a minute; next restart "
                     "held back {d:.1f}s", i=slot.index, n=MAX_RESTARTS_PER_MINUTE, d=delay)
        slot.restarts.append(now + delay)
        slot.next_start = now + delay
        log.error("worker {i} (pid {pid}) {how}; restarting it in {d:.1f}s", i=slot.index,
                  pid=pid, how=_exit_text(code), d=delay)

    def _process_gone(self, pid: int) -> None:
        from .metrics import MULTIPROCESS_ENVIRONMENT

        directory = self.environment.get(MULTIPROCESS_ENVIRONMENT)
        if directory:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, directory)

    # -- listeners.json ----------------------------------------------------------------
    def _write_listeners_file(self) -> None:
        reports = [slot.report for slot in self.slots if slot.report]
        info = {"pid": os.getpid(), "node": self.node_name,
                "listeners": reports[0].get("listeners", {}),
                "workers": [{"index": r.get("index"), "pid": r.get("pid"),
                             "node": r.get("node")} for r in reports]}
        tmp = self.data_dir / "listeners.json.tmp"
        tmp.write_text(json.dumps(info, indent=2))
        os.replace(tmp, self.data_dir / "listeners.json")

    def _remove_listeners_file(self) -> None:
        from .service import remove_listeners_file

        remove_listeners_file(self.data_dir)


def prepare_database(config, node_name: str) -> None:
    """Bring the schema up to date once, before any worker opens the database, and
    take back what a previous run of these workers held: on SQLite every lease and
    left-over file (no worker runs yet), on a shared database this node's."""
    from sqlalchemy import delete, or_

    from .service import reclaim_own_work
    from .spool.store import release_every_lease
    from .storage import schema
    from .storage.blobs import BlobStore, blob_dir
    from .storage.db import Database, default_url

    db = Database(config.storage.url or default_url(config.storage.data_dir),
                  config.storage.pool_size)
    try:
        db.upgrade()
        with db.transaction() as conn:
            reclaim_own_work(conn, node_name)
            nodes = schema.nodes.c.name
            conn.execute(delete(schema.nodes).where(
                or_(nodes == node_name, nodes.like(node_name + "-w%"))))
            if db.is_sqlite:
                release_every_lease(conn)
                blobs = BlobStore(blob_dir(config), config.storage.inline_blob_limit)
                removed = blobs.remove_leftovers(conn, 0.0)
                if removed:
                    log.info("removed {n} left-over blob files (interrupted writes)",
                             n=removed)
    finally:
        db.engine.dispose()


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def serve_arguments(args) -> list[str]:
    """The ``serve`` arguments a worker gets: the supervisor's own."""
    out = []
    for option, value in (("--config", getattr(args, "config", None)),
                          ("--data-dir", getattr(args, "data_dir", None)),
                          ("--node-name", getattr(args, "node_name", None)),
                          ("--log-level", getattr(args, "log_level", None))):
        if value:
            out += [option, str(value)]
    return out
