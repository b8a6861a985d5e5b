"""POP3 retrieval: mailet-mta against Twisted's stock POP3 over a Maildir.

    python bench/pop3.py [--quick] [--repeats 3] [--json FILE]

Mailboxes (10 KB messages): 1,000 and 10,000 messages are retrieved whole in one
session (login, STAT, LIST, UIDL, RETR of every message, QUIT; median of
``--repeats``); on 100,000 messages only login, STAT, LIST and UIDL are timed.

How the mailboxes are filled (fast, not through SMTP):

- mailet-mta: the users are created with ``mailet-mta users add`` (production argon2
  settings), then every message is inserted with a blob row
  (``BlobStore.insert_row``) and ``mailet_mta.storage.mailboxes.store_message`` in one
  transaction, before the server starts. 1,000 and 10,000: one inline blob per
  message. 100,000: one blob shared by all rows (as LocalDelivery shares one blob
  among recipients), since LIST never reads bodies.
- Twisted: the same bytes (prefix + message) as files in ``<user>/new``; for 100,000,
  hard links to one file. Its MaildirMailbox lists the directory at login and stats
  every file for STAT/LIST.

The client is a small blocking socket client that reads each multi-line answer up to
its terminating ``.`` line in bulk (poplib reads line by line and would bound the
figure on its own CPU).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ROOT,
    cpu_seconds,
    machine,
    maildir_make,
    median,
    print_profile,
    print_table,
    profile_summary,
    python_env,
    start_profiler,
    stop_process,
    stop_profiler,
    wait_for_file,
    write_json,
)
from tests.support.server import ServerProcess, base_config

PASSWORD = "pop3 bench password"
SIZE = 10 * 1024


def message(n: int, size: int = SIZE) -> bytes:
    head = (f"From: <sender@example.org>\r\nTo: <reader@example.com>\r\n"
            f"Subject: pop3 bench {n}\r\nMessage-ID: <pop3.{n}@example.org>\r\n\r\n").encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    return head + line * ((size - len(head)) // len(line))


def prefix(user: str) -> bytes:
    return f"Return-Path: <sender@example.org>\r\nDelivered-To: {user}\r\n".encode()


class Client:
    """A blocking POP3 client reading multi-line answers in bulk."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.line()

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        if not line.startswith(b"+OK"):
            raise RuntimeError(line.decode("latin-1"))
        return line

    def command(self, cmd: str) -> bytes:
        self.sock.sendall(cmd.encode() + b"\r\n")
        return self.line()

    def multi(self, cmd: str) -> bytes:
        """A multi-line answer's body (still dot-stuffed), without the final '.'."""
        self.command(cmd)
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return b""
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                body, self.buf = self.buf[:i + 2], self.buf[i + 5:]
                return body
            start = max(0, len(self.buf) - 4)
            self._fill()

    def close(self):
        try:
            self.command("QUIT")
        finally:
            self.sock.close()


def session(port: int, user: str, password: str, retr: bool) -> dict:
    """One session; seconds for login, STAT, LIST, UIDL and every RETR."""
    out = {}
    c = Client(port)
    t = time.perf_counter()
    c.command(f"USER {user}")
    c.command(f"PASS {password}")
    out["login_ms"] = 1000 * (time.perf_counter() - t)
    t = time.perf_counter()
    count = int(c.command("STAT").split()[1])
    out["stat_ms"] = 1000 * (time.perf_counter() - t)
    t = time.perf_counter()
    listing = c.multi("LIST")
    out["list_ms"] = 1000 * (time.perf_counter() - t)
    t = time.perf_counter()
    uidls = c.multi("UIDL")
    out["uidl_ms"] = 1000 * (time.perf_counter() - t)
    out["count"] = count
    assert listing.count(b"\r\n") == count and uidls.count(b"\r\n") == count
    if retr:
        octets = 0
        t = time.perf_counter()
        for i in range(1, count + 1):
            octets += len(c.multi(f"RETR {i}"))
        seconds = time.perf_counter() - t
        out.update(retr_per_s=count / seconds, retr_mb_s=octets / seconds / 1e6,
                   retr_seconds=seconds)
    c.close()
    return out


def fill_mailet(data_dir: Path, user: str, count: int, shared_blob: bool) -> None:
    """Insert ``count`` messages into ``user``'s INBOX in one transaction."""
    from mailet_mta.storage import mailboxes
    from mailet_mta.storage.blobs import BlobStore
    from mailet_mta.storage.db import Database, default_url
    db = Database(default_url(data_dir))
    blobs = BlobStore(data_dir / "blobs")
    pre = prefix(user)
    try:
        with db.transaction() as conn:
            ref = None
            for n in range(count):
                if ref is None or not shared_blob:
                    ref = blobs.from_bytes(message(n))
                    BlobStore.insert_row(conn, ref)
                mailboxes.store_message(conn, user, "INBOX", ref.id, pre, ref.size)
    finally:
        db.engine.dispose()


def fill_maildir(root: Path, user: str, count: int, shared_file: bool) -> None:
    box = maildir_make(root / user)
    (box / ".Trash" / "cur").mkdir(parents=True, exist_ok=True)
    pre = prefix(user)
    first = None
    for n in range(count):
        path = box / "new" / f"{1700000000 + n}.M{n}P1.bench"
        if shared_file and first is not None and n % 60_000:   # ext4: 65,000 links
            os.link(first, path)
            continue
        path.write_bytes(pre + message(n))
        first = path


class MailetPOP3:
    name = "mailet-mta"

    def __init__(self, workdir: Path, boxes: dict):
        self.data = workdir / "var"
        config = base_config(self.data, servernames=["example.com"], smtp=[],
                             pop3=[{"name": "pop3", "listen": "tcp:0:interface=127.0.0.1"}],
                             logging={"level": "warn"})
        store = {"mailets": [{"match": "All", "class": "ToRepository",
                              "parameters": {"repositoryPath": "kept"}}]}
        config["spoolmanager"] = {"processors": {"root": store, "error": store}}
        self.server = ServerProcess(workdir, config, name="mailet-mta")
        for user, (count, shared) in boxes.items():
            self.server.add_user(user, PASSWORD)
            fill_mailet(self.data, user, count, shared)

    def start(self):
        self.server.start()
        self.pid, self.port = self.server.proc.pid, self.server.port("pop3")
        return self

    def stop(self):
        self.server.stop()


class TwistedPOP3:
    name = "twisted"

    def __init__(self, workdir: Path, boxes: dict):
        self.root = workdir / "maildirs"
        self.ready = workdir / "port"
        self.users = ",".join(f"{u}:{PASSWORD}" for u in boxes)
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "twisted.log"
        for user, (count, shared) in boxes.items():
            fill_maildir(self.root, user, count, shared)

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench/peers/twisted_pop3_maildir.py"), "--root",
             str(self.root), "--users", self.users, "--ready", str(self.ready)],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=python_env())
        self.port = int(wait_for_file(self.ready, self.proc))
        self.pid = self.proc.pid
        return self

    def stop(self):
        stop_process(self.proc)


def measure(targets, boxes, repeats) -> dict:
    results = {}
    for rep in range(repeats):
        for user, (count, _shared) in boxes.items():
            retr = count <= 10_000
            for t in targets:
                cpu0 = cpu_seconds(t.pid)
                r = session(t.port, user, PASSWORD, retr)
                r["server_cpu_ms"] = 1000 * (cpu_seconds(t.pid) - cpu0)
                results.setdefault(f"{count}", {}).setdefault(t.name, []).append(r)
                print(f"  repeat {rep + 1} {t.name:10} {count:>7} msgs  login "
                      f"{r['login_ms']:7.1f} ms  STAT {r['stat_ms']:7.1f}  LIST "
                      f"{r['list_ms']:7.1f}  UIDL {r['uidl_ms']:7.1f}"
                      + (f"  RETR {r['retr_per_s']:7.0f}/s" if retr else ""), flush=True)
    return results


def profile_session(target, user: str) -> dict:
    """An extra, unmeasured full session on ``user``'s mailbox under py-spy."""
    out = Path(tempfile.gettempdir()) / "mailet-mta-pop3.pyspy.txt"
    spy = start_profiler(target.pid, out)
    try:
        figures = session(target.port, user, PASSWORD, True)
    finally:
        stop_profiler(spy)
    summary = profile_summary(out) if spy is not None and out.exists() else None
    print(f"\nprofile of {target.name}, session on {user} (RETR "
          f"{figures['retr_per_s']:.0f}/s under py-spy), raw stacks in {out}")
    if summary:
        print_profile(summary)
    return {"user": user, "figures": figures, "summary": summary, "raw": str(out)}


def summarize(results) -> dict:
    fields = ("login_ms", "stat_ms", "list_ms", "uidl_ms", "retr_per_s", "retr_mb_s",
              "server_cpu_ms")
    return {count: {name: {f: median([r.get(f) for r in reps]) for f in fields}
                    for name, reps in by_server.items()}
            for count, by_server in results.items()}


def targets_met(summary, sizes) -> dict:
    met = {}
    small, mid, big = (str(s) for s in sizes)
    ours = {k: v.get("mailet-mta") for k, v in summary.items()}
    for key in (small, mid):
        cell = summary.get(key, {})
        if "mailet-mta" in cell and "twisted" in cell:
            r = cell["mailet-mta"]["retr_per_s"] / cell["twisted"]["retr_per_s"]
            met[f"RETR {key} >= 1.0x twisted"] = {"ratio": r, "met": r >= 1.0}
    if ours.get(mid):
        met[f"LIST at {mid} < 5 ms"] = {"value": ours[mid]["list_ms"],
                                        "met": ours[mid]["list_ms"] < 5}
    if ours.get(big):
        worst = max(ours[big]["stat_ms"], ours[big]["list_ms"])
        met[f"STAT/LIST at {big} < 300 ms"] = {"value": worst, "met": worst < 300}
    if ours.get(small):
        login = ours[small]["login_ms"]
        met[f"login < 30 ms (argon2 production settings, {small} messages)"] = {
            "value": login, "met": login < 30}
    return met


def report(summary, met) -> None:
    rows = []
    for count, cell in summary.items():
        for name, v in cell.items():
            rows.append([count, name, v["login_ms"], v["stat_ms"], v["list_ms"],
                         v["uidl_ms"], v["retr_per_s"], v["retr_mb_s"], v["server_cpu_ms"]])
    print()
    print_table(["messages", "server", "login ms", "STAT ms", "LIST ms", "UIDL ms",
                 "RETR msg/s", "RETR MB/s", "server cpu ms"], rows)
    print()
    for what, v in met.items():
        extra = f" ({v['ratio']:.2f}x)" if "ratio" in v else f" ({v['value']:.1f} ms)"
        print(f"  {'met' if v['met'] else 'MISSED':7} {what}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 100, 1,000 and 10,000 messages, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None, help="repeats (3)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", action="store_true",
                        help="after the runs, py-spy mailet-mta on one more session")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    sizes = (100, 1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    repeats = args.repeats or (1 if args.quick else 3)
    boxes = {f"r{n}@example.com": (n, n > 10_000) for n in sizes}
    info = machine()
    print(f"machine: {info['nproc']} x {info['cpu']}, load {info['loadavg_start']}")
    work = Path(tempfile.mkdtemp(prefix="bench-pop3-"))
    targets = []
    try:
        t = time.perf_counter()
        made = [MailetPOP3(work / "mailet-mta", boxes), TwistedPOP3(work / "twisted", boxes)]
        print(f"mailboxes filled in {time.perf_counter() - t:.1f} s", flush=True)
        for target in made:
            targets.append(target.start())
        results = measure(targets, boxes, repeats)
        profile = profile_session(targets[0], f"r{sizes[1]}@example.com") \
            if args.profile else None
    finally:
        for target in targets:
            target.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
    summary = summarize(results)
    met = targets_met(summary, sizes)
    report(summary, met)
    write_json(args.json, {"machine": info, "repeats": repeats, "message_size": SIZE,
                           "runs": results, "median": summary, "targets": met,
                           "profile": profile,
                           "loadavg_end": os.getloadavg()})


if __name__ == "__main__":
    main()
