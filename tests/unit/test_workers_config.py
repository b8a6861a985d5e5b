"""``workers:`` in YAML and XML, the shared listening sockets, and the supervisor's
bounds (restart back-off and rate, the size of a worker's report)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from mailet_mta.api import ConfigurationError
from mailet_mta.config import load_config_text
from mailet_mta.config.model import MAX_WORKERS
from mailet_mta.service import configured_listeners
from mailet_mta.shared_sockets import listen_on, reserve_address
from mailet_mta.supervisor import (
    FIRST_BACKOFF,
    MAX_BACKOFF,
    MAX_REPORT,
    MAX_RESTARTS_PER_MINUTE,
    Supervisor,
    WorkerSlot,
)
from mailet_mta.worker_role import WorkerRole


def _load(text: str, kind: str = "yaml"):
    return load_config_text(text, kind, f"w.{kind}")


@pytest.mark.parametrize(("written", "workers"), [("auto", None), ("1", 1), ("4", 4),
                                                   (str(MAX_WORKERS), MAX_WORKERS)])
def test_workers_accepts_auto_or_a_count(written, workers):
    config = _load(f"servernames: [example.com]\nworkers: {written}\n")
    assert config.workers == workers
    assert config.worker_count == (workers or 1)       # auto on SQLite: one process


PG = "storage:\n  url: postgresql+psycopg://postgres@127.0.0.1/test\n"


def test_workers_defaults_to_one_per_core_on_postgresql():
    config = _load("servernames: [example.com]\n" + PG)
    assert config.workers is None
    assert config.worker_count == max(1, min(MAX_WORKERS, os.cpu_count() or 1))


@pytest.mark.parametrize("storage", ["", "storage:\n  url: sqlite:////tmp/x.sqlite3\n"])
def test_workers_auto_is_one_process_on_sqlite(storage):
    """SQLite lets one process write at a time: a second worker measured slower, so
    auto (written or left out) is one process there, whatever the cores."""
    for text in ("servernames: [example.com]\n", "servernames: [example.com]\nworkers: auto\n"):
        config = _load(text + storage)
        assert config.workers is None
        assert config.worker_count == 1


def test_an_explicit_count_is_kept_on_sqlite():
    assert _load("servernames: [example.com]\nworkers: 2\n").worker_count == 2


@pytest.mark.parametrize("written", ["0", str(MAX_WORKERS + 1), "many", "-2", "true"])
def test_workers_out_of_range_is_one_clear_error_at_its_line(written):
    with pytest.raises(ConfigurationError) as info:
        _load(f"servernames: [example.com]\nworkers: {written}\n")
    text = str(info.value)
    assert text.startswith("w.yaml:2:") and "workers must be auto or a number" in text
    assert f"1 to {MAX_WORKERS}" in text


def test_workers_in_the_xml_file():
    config = _load("<config><James><servernames><servername>example.com</servername>"
                   "</servernames></James><workers>3</workers></config>", "xml")
    assert config.workers == 3


def test_configured_listeners_names_every_listener_with_its_kind():
    config = _load("servernames: [example.com]\n"
                   "smtpservers: [{name: smtp, listen: 'tcp:25'}, "
                   "{name: submission, listen: 'tcp:587'}]\n"
                   "pop3servers: [{name: pop3, listen: 'tcp:110'}]\n"
                   "metrics: {listen: 'tcp:9464'}\n")
    assert [(key, listen) for key, listen, _src in configured_listeners(config)] == [
        ("smtp:smtp", "tcp:25"), ("smtp:submission", "tcp:587"), ("pop3:pop3", "tcp:110"),
        ("http:metrics", "tcp:9464")]


def test_workers_listen_beside_the_reserved_address_and_share_its_port():
    from twisted.internet import endpoints, reactor
    from twisted.internet.protocol import Factory, Protocol

    listen = "tcp:0:interface=127.0.0.1:backlog=7"
    reserved = reserve_address(listen, "smtp:smtp")
    ports = []
    try:
        host, port = reserved.getsockname()
        assert host == "127.0.0.1" and port > 0
        with pytest.raises(ConnectionRefusedError):      # reserved, nobody listens yet
            socket.create_connection((host, port), timeout=5).close()
        for _ in range(2):                                # two workers, one port
            d = listen_on(reactor, endpoints.serverFromString(reactor, listen),
                          Factory.forProtocol(Protocol), os.dup(reserved.fileno()))
            ports.append(d.result)
        assert {p.getHost().port for p in ports} == {port}
        socket.create_connection((host, port), timeout=5).close()
    finally:
        reserved.close()
        for p in ports:
            p.stopListening()


def test_an_endpoint_that_cannot_be_shared_is_refused_by_name():
    with pytest.raises(ConfigurationError, match="pop3:pop3: listen 'unix:/tmp/x' cannot "
                                                 "be shared by worker processes"):
        reserve_address("unix:/tmp/x", "pop3:pop3")


def test_a_worker_refuses_a_listener_without_a_socket():
    role = WorkerRole(index=0, count=2, supervisor_pid=1, ready_fd=-1,
                      sockets={"smtp:smtp": 5})

    class Service:
        shared_fd = None

    smtp, imap = Service(), Service()
    with pytest.raises(ConfigurationError, match="listener imap:imap has no socket"):
        role.adopt_listeners([("smtp", "smtp", smtp), ("imap", "imap", imap)])
    assert smtp.shared_fd == 5
    assert WorkerRole.from_environment({"MAILET_MTA_WORKER": role.to_environment()}) == role


def _supervisor() -> Supervisor:
    config = _load("servernames: [example.com]\nworkers: 2\n")
    return Supervisor(config, [], 2, node_name="test")


def test_restart_back_off_doubles_up_to_its_bound_and_restarts_are_rate_limited():
    supervisor, slot = _supervisor(), WorkerSlot(0)
    delays = []
    for _ in range(MAX_RESTARTS_PER_MINUTE + 2):
        slot.started = time.monotonic()          # died young every time
        supervisor._schedule_restart(slot, 123, -9)
        delays.append(slot.next_start - time.monotonic())
    assert delays[0] == pytest.approx(FIRST_BACKOFF, abs=0.1)
    assert delays[1] == pytest.approx(2 * FIRST_BACKOFF, abs=0.1)
    assert max(delays[:MAX_RESTARTS_PER_MINUTE]) <= MAX_BACKOFF + 0.1
    # The next restart after MAX_RESTARTS_PER_MINUTE within a minute waits for the window.
    assert delays[MAX_RESTARTS_PER_MINUTE] > MAX_BACKOFF
    assert len(slot.restarts) == MAX_RESTARTS_PER_MINUTE


def test_a_worker_that_ran_long_restarts_after_the_first_back_off_again():
    supervisor, slot = _supervisor(), WorkerSlot(0)
    slot.backoff = MAX_BACKOFF
    slot.started = time.monotonic() - 3600
    supervisor._schedule_restart(slot, 123, 1)
    assert slot.next_start - time.monotonic() == pytest.approx(FIRST_BACKOFF, abs=0.1)


def test_a_worker_report_is_read_up_to_its_limit():
    supervisor, slot = _supervisor(), WorkerSlot(0)
    read_end, write_end = os.pipe()
    slot.pipe = read_end
    os.set_blocking(write_end, False)
    try:
        written = 0
        for _ in range(4):                   # more than MAX_REPORT, no line end
            try:
                written += os.write(write_end, b"x" * MAX_REPORT)
            except BlockingIOError:
                break
            supervisor._read_report(slot)
        assert written > MAX_REPORT
        assert len(slot.buffer) <= MAX_REPORT and slot.report is None
    finally:
        os.close(write_end)
        if slot.pipe is not None:
            os.close(slot.pipe)
