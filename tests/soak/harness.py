"""Crash-safety soak: SMTP clients send numbered mails while the server is SIGKILLed.

One run (:func:`run_soak`):

1. starts ``mailet-mta serve`` (SQLite or PostgreSQL) with local users, and, when
   ``remote`` is on, a second ``mailet-mta`` as the remote peer, reached through the
   static MX table ``dns: hosts:`` of the first one;
2. ``clients`` threads send mails, each with a fresh number in its Message-ID, to one
   recipient each (local users, or users of the peer's domain). A number is recorded
   as *accepted* only when the server answered ``250`` to the end of DATA. A client
   never resends a number after an ambiguous failure (that would be the client's
   duplicate, not the server's);
3. a killer thread sends SIGKILL to the server at random moments (``kills`` times)
   and restarts it on the same ports — or, with worker processes, to one worker at a
   time, which the supervisor restarts;
4. after the last restart, waits until every accepted mail is in a mailbox, then
   counts every Message-ID in every mailbox (local, and the peer's) over POP3 TOP.

The result says how many were accepted, delivered, lost (accepted but in no mailbox),
duplicated (a Message-ID in more than one place or twice in one), and *extra* (not
accepted — the 250 never reached the client — but delivered once; that is allowed).

Short runs are the CI tests in ``tests/soak/``; ``bench/soak.py`` runs long ones.
"""

from __future__ import annotations

import os
import poplib
import random
import re
import signal
import smtplib
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import ServerProcess, base_config

PASSWORD = "soak password 1"
LOCAL_DOMAIN = "example.com"
REMOTE_DOMAIN = "remote.example"
LOCAL_USERS = [f"user{i}@{LOCAL_DOMAIN}" for i in range(4)]
REMOTE_USERS = [f"peer{i}@{REMOTE_DOMAIN}" for i in range(2)]
MSGID_RE = re.compile(rb"^Message-ID:\s*<soak\.(\d+)@", re.I | re.M)


def remote_delivery_available() -> bool:
    """True when the RemoteDelivery mailet can be resolved (delivery modules present)."""
    try:
        from mailet_mta.spool.registry import resolve

        resolve("mailet", "RemoteDelivery")
        return True
    except Exception:  # noqa: BLE001 - any failure: not available
        return False


def local_only_processors(*, remote_port: int | None = None) -> dict:
    """The default pipeline with every processor that needs remote delivery or bounces
    replaced by a repository, so it runs with only the local modules; with
    ``remote_port`` the ``relay`` processor uses RemoteDelivery instead."""
    store = lambda repo: {"mailets": [{"match": "All", "class": "ToRepository",  # noqa: E731
                                       "parameters": {"repositoryPath": repo}}]}
    relay = store("relay-out")
    if remote_port is not None:
        relay = {"mailets": [{"match": "All", "class": "RemoteDelivery", "parameters": {
            "outgoing": "outgoing", "delayTime": "20*1 second", "maxRetries": 20,
            "sendpartial": True, "bounceProcessor": "bounces"}}]}
    return {
        "root": {"mailets": [
            {"match": "All", "class": "PostmasterAlias"},
            {"match": "RelayLimit=30", "class": "ToRepository",
             "parameters": {"repositoryPath": "relay-limit-exceeded"}},
            {"match": "All", "class": "ToProcessor", "parameters": {"processor": "transport"}}]},
        "transport": {
            "matchers": {"relay-allowed": {"match": "Or", "matchers": [
                "SMTPAuthSuccessful", "SMTPIsAuthNetwork", "SentByMailet"]}},
            "mailets": [
                {"match": "All", "class": "RemoveMimeHeader", "parameters": {"name": "bcc"}},
                {"match": "RecipientIsLocal", "class": "ToProcessor",
                 "parameters": {"processor": "local-delivery"}},
                {"match": "HostIsLocal", "class": "ToProcessor",
                 "parameters": {"processor": "local-address-error"}},
                {"match": "relay-allowed", "class": "ToProcessor",
                 "parameters": {"processor": "relay"}},
                {"match": "All", "class": "ToProcessor",
                 "parameters": {"processor": "relay-denied"}}]},
        "local-delivery": {"mailets": [{"match": "All", "class": "LocalDelivery"}]},
        "relay": relay,
        "local-address-error": store("address-error"),
        "relay-denied": store("relay-denied"),
        "rrt-error": store("rrt-error"),
        "bounces": store("bounces"),
        "error": store("error"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SoakResult:
    """The figures of one soak run (what docs/RELIABILITY.md reports)."""

    backend: str
    remote: bool
    attempted: int = 0
    accepted: int = 0
    kills: int = 0
    delivered: int = 0
    lost: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    duplicated: list = field(default_factory=list)
    extra: int = 0
    restarts: int = 0                  # workers the supervisor restarted after a kill
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.backend}{' +remote' if self.remote else ''}: sent {self.attempted}, "
                f"accepted (250) {self.accepted}, kills {self.kills}, delivered "
                f"{self.delivered}, lost {len(self.lost)}, duplicated {len(self.duplicated)}, "
                f"still in the spool {len(self.pending)}, "
                f"delivered without a 250 seen {self.extra}, {self.seconds:.0f} s")


class _Numbers:
    def __init__(self):
        self._lock = threading.Lock()
        self._next = 0
        self.accepted: set[int] = set()
        self.attempted = 0
        self.started = time.monotonic()

    def ahead_of(self, total: int, deadline: float) -> bool:
        """True when more than the even share of ``total`` up to now has been sent."""
        span = max(deadline - self.started, 0.001) * 0.8
        return self.attempted > total * (time.monotonic() - self.started) / span

    def take(self) -> int:
        with self._lock:
            self._next += 1
            self.attempted += 1
            return self._next

    def accept(self, n: int) -> None:
        with self._lock:
            self.accepted.add(n)


def soak_message(n: int, to: str) -> bytes:
    """Mostly small mails (inline blobs); every seventh is 136-184 KB, past the
    inline limit (128 KiB), so its body is written to a blob file on the fsync thread,
    and another seventh 70-118 KB, a large body kept in the database."""
    body = "x" * (n % 300) + "\r\n"
    if n % 7 == 0:
        body += ("y" * 78 + "\r\n") * (1700 + 12 * (n % 50))
    elif n % 7 == 3:
        body += ("z" * 78 + "\r\n") * (875 + 12 * (n % 50))
    return (f"From: sender@client.example\r\nTo: {to}\r\nSubject: soak {n}\r\n"
            f"Message-ID: <soak.{n}@client.example>\r\n\r\nsoak mail number {n}\r\n"
            + body).encode()


def _client(ports: dict, numbers: _Numbers, recipients: list[str], stop: threading.Event,
            deadline: float, max_mails: int) -> None:
    rng = random.Random()
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            s = smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=15)
        except OSError:
            time.sleep(0.05)
            continue
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                if numbers.attempted >= max_mails:
                    return
                if numbers.ahead_of(max_mails, deadline):
                    time.sleep(0.02)       # spread the mails over the whole run
                    continue
                n = numbers.take()
                rcpt = rng.choice(recipients)
                s.sendmail("sender@client.example", [rcpt], soak_message(n, rcpt))
                numbers.accept(n)      # sendmail returned: DATA got 250
        except (smtplib.SMTPException, OSError):
            pass                       # killed mid-mail: reconnect, next number
        finally:
            try:
                s.close()
            except OSError:
                pass


def mailbox_ids(port: int, user: str) -> list[int]:
    """The soak numbers in ``user``'s mailbox (POP3 TOP n 0: headers only)."""
    box = poplib.POP3("127.0.0.1", port, timeout=30)
    try:
        box.user(user)
        box.pass_(PASSWORD)
        count, _ = box.stat()
        ids = []
        for i in range(1, count + 1):
            head = b"\r\n".join(box.top(i, 0)[1])
            m = MSGID_RE.search(head)
            if m:
                ids.append(int(m.group(1)))
        return ids
    finally:
        box.quit()


def _count_all(servers: list[tuple[ServerProcess, list[str]]]) -> Counter:
    seen: Counter = Counter()
    for srv, users in servers:
        for user in users:
            seen.update(mailbox_ids(srv.port("pop3"), user))
    return seen


def _config(data_dir: Path, smtp_port: int, pop3_port: int, db_url: str | None,
            servernames, remote_port: int | None = None, workers: int = 1) -> dict:
    config = base_config(
        data_dir, servernames=servernames, workers=workers,
        smtp=[{"name": "smtp", "listen": f"tcp:{smtp_port}:interface=127.0.0.1",
               "authRequired": True, "authorizedAddresses": ["127.0.0.1/32"],
               "connectionTimeout": 60}],
        pop3=[{"name": "pop3", "listen": f"tcp:{pop3_port}:interface=127.0.0.1",
               "authFailureDelay": 0}],
        processors=local_only_processors(remote_port=remote_port))
    if db_url:
        config["storage"]["url"] = db_url
    if remote_port is not None:
        config["dns"] = {"hosts": {REMOTE_DOMAIN: [f"127.0.0.1:{remote_port}"]}}
    config["logging"] = {"level": "warn"}
    return config


def _server(workdir: Path, name: str, db_url, servernames, users, remote_port=None,
            workers: int = 1):
    smtp_port, pop3_port = free_port(), free_port()
    srv = ServerProcess(workdir / name, _config(workdir / name / "var", smtp_port,
                                                pop3_port, db_url, servernames,
                                                remote_port, workers), name=name)
    srv.admin("domains", "add", servernames[0], check=False)
    for user in users:
        srv.add_user(user, PASSWORD)
    return srv, {"smtp": smtp_port, "pop3": pop3_port}


def _killer(srv: ServerProcess, kills: int, interval: tuple[float, float],
            result: SoakResult, stop: threading.Event) -> None:
    rng = random.Random()
    for _ in range(kills):
        if stop.wait(rng.uniform(*interval)):
            return
        srv.kill()
        result.kills += 1
        time.sleep(rng.uniform(0.0, 0.3))
        for attempt in range(5):           # the port may linger a moment after SIGKILL
            try:
                srv.start(timeout=60)
                break
            except RuntimeError:
                if attempt == 4:
                    raise
                time.sleep(0.5)


def _worker_killer(srv: ServerProcess, kills: int, interval: tuple[float, float],
                   result: SoakResult, stop: threading.Event) -> None:
    """SIGKILL one worker of the supervisor at a time; wait (bounded) until the
    supervisor has started another in its place."""
    rng = random.Random()
    for _ in range(kills):
        if stop.wait(rng.uniform(*interval)):
            return
        workers = {w["index"]: w["pid"] for w in srv.info()["workers"]}
        index = rng.choice(sorted(workers))
        os.kill(workers[index], signal.SIGKILL)
        result.kills += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stop.is_set():
            now = {w["index"]: w["pid"] for w in srv.info().get("workers", [])}
            if len(now) == len(workers) and now[index] != workers[index]:
                result.restarts += 1
                break
            time.sleep(0.1)


def run_soak(workdir: Path, *, db_url: str | None = None, peer_db_url: str | None = None,
             clients: int = 16, kills: int = 10, max_mails: int = 2000,
             duration: float = 60.0, kill_interval: tuple[float, float] = (0.5, 2.5),
             remote: bool = False, settle_timeout: float = 180.0,
             workers: int = 1) -> SoakResult:
    """One soak run; see the module docstring. Every loop is bounded in count and time.
    With ``workers`` above 1 the kills hit one worker process at a time (the
    supervisor restarts it) instead of the whole server."""
    started = time.monotonic()
    result = SoakResult(backend="postgresql" if db_url else "sqlite", remote=remote)
    places = []
    recipients = list(LOCAL_USERS)
    peer = None
    if remote:
        peer, peer_ports = _server(workdir, "peer", peer_db_url, [REMOTE_DOMAIN],
                                   REMOTE_USERS)
        peer.start()
        places.append((peer, REMOTE_USERS))
        recipients += REMOTE_USERS
    srv, ports = _server(workdir, "server", db_url, [LOCAL_DOMAIN], LOCAL_USERS,
                         remote_port=peer_ports["smtp"] if remote else None,
                         workers=workers)
    places.insert(0, (srv, LOCAL_USERS))
    srv.start()
    try:
        numbers, stop = _Numbers(), threading.Event()
        deadline = time.monotonic() + duration
        threads = [threading.Thread(target=_client, daemon=True,
                                    args=(ports, numbers, recipients, stop, deadline,
                                          max_mails)) for _ in range(clients)]
        killer = threading.Thread(target=_killer if workers == 1 else _worker_killer,
                                  daemon=True,
                                  args=(srv, kills, kill_interval, result, stop))
        for t in threads:
            t.start()
        killer.start()
        killer.join(duration + 120)
        for t in threads:                  # the clients go on a little after the last kill
            t.join(max(0.0, deadline - time.monotonic()) + 30)
        stop.set()
        if srv.proc is None or srv.proc.poll() is not None:
            srv.start()
        result.attempted, accepted = numbers.attempted, set(numbers.accepted)
        result.accepted = len(accepted)
        seen = _settle(places, accepted, settle_timeout)
        result.delivered = sum(seen.values())
        missing = accepted - set(seen)
        spooled = spooled_numbers(srv, db_url) if missing else set()
        result.pending = sorted(missing & spooled)    # durable, not yet delivered
        result.lost = sorted(missing - spooled)
        result.duplicated = sorted(n for n, c in seen.items() if c > 1)
        result.extra = len(set(seen) - accepted)
        result.seconds = time.monotonic() - started
        return result
    finally:
        srv.stop()
        if peer is not None:
            peer.stop()


def spooled_numbers(srv: ServerProcess, db_url: str | None) -> set[int]:
    """The soak numbers of mails still in the spool table (read from the database)."""
    import sqlalchemy as sa

    url = db_url or "sqlite:///" + str((srv.data_dir / "mailet-mta.sqlite3").resolve())
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT b.data FROM spool s JOIN blobs b ON b.id = s.blob_id")).fetchall()
    finally:
        engine.dispose()
    found = set()
    for (data,) in rows:
        m = MSGID_RE.search(bytes(data or b""))
        if m:
            found.add(int(m.group(1)))
    return found


def _settle(places, accepted: set[int], timeout: float) -> Counter:
    """Wait (bounded) until every accepted number is delivered; the final count."""
    deadline = time.monotonic() + timeout
    seen = _count_all(places)
    while not accepted <= set(seen) and time.monotonic() < deadline:
        time.sleep(0.25)
        seen = _count_all(places)
    time.sleep(1.0)                        # let late, unaccepted ones land before the count
    return _count_all(places)
