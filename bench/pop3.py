"""POP3 retrieval: mailet-mta against Dovecot 2.3 and Twisted's stock POP3 over a Maildir.

    python bench/pop3.py [--quick] [--repeats 3] [--servers mailet-mta,dovecot] [--json FILE]

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
- Dovecot (bench/peers/dovecot.py, its own instance on loopback): 1,000 and 10,000
  through its LMTP once it runs (it adds the ``Return-Path``/``Delivered-To`` lines
  the others' copies start with, names, stores and indexes each message as its
  delivery always does); 100,000: hard links to one file in ``Maildir/new``, named as
  Dovecot names its files, indexed by Dovecot in the warm-up session. Its passwords
  are argon2id hashes at mailet-mta's memory and time cost (``{ARGON2ID}``, one lane:
  bench/peers/dovecot.py :func:`argon2id_phc`), so both servers pay a key derivation
  at login; ``--dovecot-scheme plain`` gives it ``{PLAIN}`` passwords instead.

Besides the RETR rate, each session's RETR round trips give the median (``RETR p50
us``) and the time spent in RETRs over 1 ms (``RETR >1ms ms``: a server waiting, e.g.
for a read, rather than serving slowly).

Every server gets one unmeasured warm-up session per mailbox (login, STAT, LIST)
before the repeats; the servers take turns mailbox by mailbox and their order rotates
every repeat. Server CPU is that of the server's whole process tree (Dovecot's master,
login, auth and per-session ``pop3`` processes, exited ones included).

Memory: ``--idle 100`` sessions are opened and logged in (USER/PASS, STAT) and held;
the growth of the PSS summed over the server's process tree (``Pss`` of
/proc/<pid>/smaps_rollup) is reported per session. The base process (mailet-mta after
the runs) is broken down from /proc/<pid>/smaps (anonymous, heap, Python's own files,
shared libraries) and its imports from ``python -X importtime`` (cumulative import time
per top-level package, and the number of modules).

The client is a small blocking socket client that reads each multi-line answer up to
its terminating ``.`` line in bulk (poplib reads line by line and would bound the
figure on its own CPU).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

# Run as a script: put the checkout on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    LineSocket,
    machine,
    maildir_make,
    median,
    print_profile,
    print_table,
    process_tree,
    profile_summary,
    pss_kib,
    python_env,
    server_list,
    smaps_breakdown,
    start_profiler,
    stop_on_sigterm,
    stop_process,
    stop_profiler,
    tree_cpu_seconds,
    tree_pss_kib,
    wait_for_file,
    write_json,
)
from bench.peers.dovecot import SCHEMES, DovecotPeer
from tests.support.server import ServerProcess, base_config

PASSWORD = "pop3 bench password"
SIZE = 10 * 1024
SERVERS = ("mailet-mta", "dovecot", "twisted")
REFERENCE = "dovecot"
SENDER = "sender@example.org"


def message(n: int, size: int = SIZE) -> bytes:
    head = (f"From: <sender@example.org>\r\nTo: <reader@example.com>\r\n"
            f"Subject: pop3 bench {n}\r\nMessage-ID: <pop3.{n}@example.org>\r\n\r\n").encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    return head + line * ((size - len(head)) // len(line))


def prefix(user: str) -> bytes:
    return f"Return-Path: <sender@example.org>\r\nDelivered-To: {user}\r\n".encode()


class Client(LineSocket):
    """A blocking POP3 client reading multi-line answers in bulk."""

    def __init__(self, port: int):
        super().__init__(port)
        self.line()

    def line(self) -> bytes:
        line = self._line()
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
        octets, each = 0, []
        t = time.perf_counter()
        for i in range(1, count + 1):
            start = time.perf_counter()
            octets += len(c.multi(f"RETR {i}"))
            each.append(time.perf_counter() - start)
        seconds = time.perf_counter() - t
        out.update(retr_per_s=count / seconds, retr_mb_s=octets / seconds / 1e6,
                   retr_seconds=seconds, **retr_latency(each))
    c.close()
    return out


def retr_latency(each: list[float]) -> dict:
    """The median RETR round trip (µs), and the RETRs that took over 1 ms: how many
    and how long in all (ms): where a session waited rather than how fast it ran."""
    slow = [x for x in each if x > 1e-3]
    return {"retr_p50_us": 1e6 * median(each), "retr_slow": len(slow),
            "retr_slow_ms": 1000 * sum(slow)}


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


def is_idle(user: str) -> bool:
    """Users ``idle<n>@…`` hold the idle sessions of the memory figure (one each: a
    POP3 mailbox takes one session at a time)."""
    return user.startswith("idle")


def clone_user(data_dir: Path, template: str, user: str) -> None:
    """A user with ``template``'s password hash (argon2 once, not once per idle user)."""
    from sqlalchemy import text

    from mailet_mta.storage.db import Database, default_url
    db = Database(default_url(data_dir))
    try:
        with db.transaction() as conn:
            conn.execute(text("INSERT INTO users (name, password_hash, quota, created) "
                              "SELECT :user, password_hash, quota, created FROM users "
                              "WHERE name = :template"), {"user": user, "template": template})
    finally:
        db.engine.dispose()


def fill_maildir(root: Path, user: str, count: int, shared_file: bool,
                 box: Path | None = None) -> None:
    box = maildir_make(box or root / user)
    (box / ".Trash" / "cur").mkdir(parents=True, exist_ok=True)
    pre = prefix(user)
    first, size = None, 0
    for n in range(count):
        # Named as Dovecot's delivery names them (<time>.M<usecs>P<pid>.<host>, then
        # S= size and W= size with CRLF line ends: these messages are CRLF already), so
        # no reader has to read a file to learn its size. Usecs spread as a clock's
        # do: Dovecot hashes the names, and names differing only in a counter written
        # twice (the time and the usecs both n) fall into a few hundred buckets.
        linked = shared_file and first is not None and n % 60_000   # ext4: 65,000 links
        data = b"" if linked else pre + message(n)
        size = size if linked else len(data)
        name = f"{1700000000 + n // 50}.M{n * 7919 % 1_000_000}P4242.bench"
        path = box / "new" / f"{name},S={size},W={size}"
        if linked:
            os.link(first, path)
            continue
        path.write_bytes(data)
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
        template = None
        for user, (count, shared) in boxes.items():
            if template is None or not is_idle(user):
                self.server.add_user(user, PASSWORD)
                template = template or user
            else:
                clone_user(self.data, template, user)
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


class DovecotPOP3:
    """Dovecot's pop3 as its own instance over Maildirs holding the same bytes."""

    name = "dovecot"

    def __init__(self, workdir: Path, boxes: dict, scheme: str = "argon2id"):
        self.peer = DovecotPeer(workdir, {user: PASSWORD for user in boxes}, scheme=scheme)
        self.boxes = boxes

    def start(self):
        self.peer.start()
        t = time.perf_counter()
        for user, (count, shared) in self.boxes.items():
            if shared:      # 100,000 hard links: a delivery each would take an hour
                fill_maildir(self.peer.workdir, user, count, True,
                             box=self.peer.maildir(user))
                self.peer.own_mail()
            else:
                self.peer.deliver(user, (message(n) for n in range(count)), SENDER)
        print(f"dovecot: mailboxes delivered through its LMTP in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        self.pid, self.port = self.peer.pid, self.peer.pop3_port
        self.imap_port = self.peer.imap_port
        return self

    def stop(self):
        self.peer.stop()


def warm_up(targets, boxes) -> None:
    """One unmeasured login/STAT/LIST per mailbox and server (indexes, caches)."""
    for user in boxes:
        if is_idle(user):
            continue
        for t in targets:
            session(t.port, user, PASSWORD, False)


def measure(targets, boxes, repeats) -> dict:
    results = {}
    for rep in range(repeats):
        order = targets[rep % len(targets):] + targets[:rep % len(targets)]
        for user, (count, _shared) in boxes.items():
            if is_idle(user):
                continue
            retr = count <= 10_000
            for t in order:
                cpu0 = tree_cpu_seconds(t.pid)
                r = session(t.port, user, PASSWORD, retr)
                r["server_cpu_ms"] = 1000 * (tree_cpu_seconds(t.pid) - cpu0)
                results.setdefault(f"{count}", {}).setdefault(t.name, []).append(r)
                print(f"  repeat {rep + 1} {t.name:10} {count:>7} msgs  login "
                      f"{r['login_ms']:7.1f} ms  STAT {r['stat_ms']:7.1f}  LIST "
                      f"{r['list_ms']:7.1f}  UIDL {r['uidl_ms']:7.1f}"
                      + (f"  RETR {r['retr_per_s']:7.0f}/s (p50 {r['retr_p50_us']:.0f} us,"
                         f" {r['retr_slow']} over 1 ms: {r['retr_slow_ms']:.1f} ms)"
                         if retr else ""), flush=True)
    return results


def profile_session(target, user: str) -> dict:
    """An extra, unmeasured full session on ``user``'s mailbox under py-spy."""
    out = Path(tempfile.gettempdir()) / "mailet-mta-pop3.pyspy.txt"
    spy = start_profiler(target.pid, out, idle=True)
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


def idle_sessions(target, users: list[str]) -> dict:
    """PSS growth of the server's process tree with one logged-in idle session per user."""
    count = len(users)
    # Three sessions first: the first logins' one-time memory is not per session
    # (argon2's 19 MiB working area: glibc maps the first one and, having raised its
    # mmap threshold on freeing it, keeps the second in its heap for reuse).
    for _ in range(3):
        warm = Client(target.port)
        warm.command(f"USER {users[0]}")
        warm.command(f"PASS {PASSWORD}")
        warm.close()
    time.sleep(0.5)
    before = tree_pss_kib(target.pid)
    clients = []
    try:
        for user in users:
            c = Client(target.port)
            c.command(f"USER {user}")
            c.command(f"PASS {PASSWORD}")
            c.command("STAT")
            clients.append(c)
        time.sleep(1.0)
        after = tree_pss_kib(target.pid)
        processes = len(process_tree(target.pid))
    finally:
        for c in clients:
            c.close()
    return {"sessions": count, "pss_before_kib": before, "pss_after_kib": after,
            "per_session_kib": (after - before) / count, "processes": processes}


def import_breakdown(top: int = 12) -> dict:
    """``python -X importtime`` of what ``mailet-mta serve`` imports, by top package."""
    import collections
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c",
         "import mailet_mta.cli.serve, mailet_mta.service, mailet_mta.pop3.factory, "
         "mailet_mta.smtp, mailet_mta.spool"],
        capture_output=True, text=True, env=python_env(), cwd=ROOT)
    by_package: collections.Counter = collections.Counter()
    modules = 0
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line.split("|")
        modules += 1
        by_package[name.strip().split(".")[0]] += int(self_us.split(":")[-1])
    return {"modules": modules,
            "self_ms_by_package": [(n, us / 1000) for n, us in by_package.most_common(top)]}


# Imported one after the other in a fresh interpreter: each one's PSS growth is what it
# brings that the ones before did not (a shared dependency counts at its first importer).
IMPORT_STEPS = ("twisted.internet.epollreactor", "twisted.application.internet",
                "sqlalchemy", "cryptography.x509", "argon2", "yaml", "mailet_mta.storage.db",
                "mailet_mta.smtp", "mailet_mta.spool", "mailet_mta.service")
_IMPORT_MEMORY = """
import importlib, json, sys
def pss():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1])
out = [("interpreter", pss())]
for name in sys.argv[1:]:
    importlib.import_module(name)
    out.append((name, pss()))
print(json.dumps(out))
"""


def import_memory() -> list:
    """[(step, PSS growth in KiB)]: the interpreter, then each of IMPORT_STEPS."""
    import json
    out = subprocess.run([sys.executable, "-c", _IMPORT_MEMORY, *IMPORT_STEPS],
                         capture_output=True, text=True, env=python_env(), cwd=ROOT)
    if out.returncode != 0:
        return [("failed", out.stderr[-300:])]
    steps, before, growth = json.loads(out.stdout), 0, []
    for name, pss in steps:
        growth.append((name, pss - before))
        before = pss
    return growth


def base_breakdown(pid: int) -> dict:
    """The server process's PSS and what it is made of (mappings, imports' memory and
    import time)."""
    return {"pss": pss_kib(pid), "mappings_kib": smaps_breakdown(pid),
            "import_memory_kib": import_memory(), "imports": import_breakdown()}


def report_memory(memory: dict) -> None:
    for name, m in memory.items():
        if "sessions" in m:
            print(f"{name:10} {m['sessions']} idle sessions: PSS {m['pss_before_kib'] / 1024:.1f}"
                  f" -> {m['pss_after_kib'] / 1024:.1f} MiB ({m['per_session_kib']:.1f} KiB "
                  f"per session, {m['processes']} processes)")
    base = memory.get("mailet-mta base")
    if base:
        pss = base["pss"]
        print(f"mailet-mta base process: PSS {pss.get('Pss', 0) / 1024:.1f} MiB (anon "
              f"{pss.get('Pss_Anon', 0) / 1024:.1f}, file {pss.get('Pss_File', 0) / 1024:.1f})"
              f", {base.get('pss_after_runs', {}).get('Pss', 0) / 1024:.1f} MiB after the runs")
        for name, kib in base["mappings_kib"]:
            print(f"    {kib / 1024:7.1f} MiB  {name}")
        print("  PSS growth of a fresh interpreter importing, in turn:")
        for name, kib in base["import_memory_kib"]:
            print(f"    {kib / 1024 if isinstance(kib, int) else 0:7.1f} MiB  {name}")
        imports = base["imports"]
        print(f"  imports: {imports['modules']} modules; import time by package (ms):")
        for name, ms in imports["self_ms_by_package"]:
            print(f"    {ms:7.1f}  {name}")


def summarize(results) -> dict:
    fields = ("login_ms", "stat_ms", "list_ms", "uidl_ms", "retr_per_s", "retr_mb_s",
              "server_cpu_ms", "retr_p50_us", "retr_slow_ms")
    return {count: {name: {f: median([r.get(f) for r in reps]) for f in fields}
                    for name, reps in by_server.items()}
            for count, by_server in results.items()}


def targets_met(summary, sizes) -> dict:
    met = {}
    small, mid, big = ([str(s) for s in sizes] + [None, None])[:3]    # two sizes: no big
    ours = {k: v.get("mailet-mta") for k, v in summary.items()}
    for key in (small, mid):
        cell = summary.get(key, {})
        for peer in (REFERENCE, "twisted"):
            if "mailet-mta" in cell and peer in cell:
                r = cell["mailet-mta"]["retr_per_s"] / cell[peer]["retr_per_s"]
                met[f"RETR {key} >= 1.0x {peer}"] = {"ratio": r, "met": r >= 1.0}
    if ours.get(mid):
        met[f"LIST at {mid} < 5 ms"] = {"value": ours[mid]["list_ms"],
                                        "met": ours[mid]["list_ms"] < 5}
    if big and ours.get(big):
        worst = max(ours[big]["stat_ms"], ours[big]["list_ms"])
        met[f"STAT/LIST at {big} < 300 ms"] = {"value": worst, "met": worst < 300}
    if ours.get(small):
        login = ours[small]["login_ms"]
        met[f"login < 30 ms (argon2 production settings, {small} messages)"] = {
            "value": login, "met": login < 30}
    return met


def repeat_ratios(results) -> dict:
    """RETR rate of mailet-mta over the reference's, repeat by repeat, per mailbox."""
    out = {}
    for count, by_server in results.items():
        ours, ref = by_server.get("mailet-mta"), by_server.get(REFERENCE)
        if ours and ref and "retr_per_s" in ours[0]:
            out[count] = [a["retr_per_s"] / b["retr_per_s"] for a, b in zip(ours, ref)]
    return out


def report(summary, met, ratios=None) -> None:
    rows = []
    for count, cell in summary.items():
        ref = (cell.get(REFERENCE) or {}).get("retr_per_s")
        for name, v in cell.items():
            ratio = v["retr_per_s"] / ref if ref and v["retr_per_s"] else None
            rows.append([count, name, v["login_ms"], v["stat_ms"], v["list_ms"],
                         v["uidl_ms"], v["retr_per_s"], ratio, v["retr_mb_s"],
                         v["server_cpu_ms"], v.get("retr_p50_us"), v.get("retr_slow_ms")])
    print()
    print_table(["messages", "server", "login ms", "STAT ms", "LIST ms", "UIDL ms",
                 "RETR msg/s", "x dovecot", "RETR MB/s", "server cpu ms", "RETR p50 us",
                 "RETR >1ms ms"], rows)
    print()
    for count, values in (ratios or {}).items():
        print(f"  RETR x {REFERENCE} per repeat, {count} messages: "
              + ", ".join(f"{r:.2f}" for r in values))
    for what, v in met.items():
        extra = f" ({v['ratio']:.2f}x)" if "ratio" in v else f" ({v['value']:.1f} ms)"
        print(f"  {'met' if v['met'] else 'MISSED':7} {what}{extra}")



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 100, 1,000 and 10,000 messages, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None, help="repeats (3)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", action="store_true",
                        help="after the runs, py-spy mailet-mta on one more session")
    parser.add_argument("--servers", type=server_list(SERVERS),
                        default="mailet-mta,dovecot,twisted",
                        help=f"comma-separated, of: {', '.join(SERVERS)}")
    parser.add_argument("--sizes", type=lambda t: [int(v) for v in t.split(",")],
                        default=None,
                        help="two or three mailbox sizes (1000,10000,100000; the third "
                             "only listed, not retrieved)")
    parser.add_argument("--idle", type=int, default=100,
                        help="idle logged-in sessions for the memory figure (0: skip)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--dovecot-scheme", choices=SCHEMES, default="argon2id",
                        help="Dovecot's stored passwords: argon2id (as mailet-mta's "
                             "cost, one lane) or plain")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    stop_on_sigterm()
    sizes = args.sizes or ((100, 1_000, 10_000) if args.quick else (1_000, 10_000, 100_000))
    repeats = args.repeats or (1 if args.quick else 3)
    boxes = {f"r{n}@example.com": (n, n > 10_000) for n in sizes}
    boxes.update({f"idle{i}@example.com": (10, False) for i in range(args.idle)})
    info = machine()
    print(f"machine: {info['nproc']} x {info['cpu']}, load {info['loadavg_start']}")
    work = Path(tempfile.mkdtemp(prefix="bench-pop3-"))
    targets = []
    try:
        t = time.perf_counter()
        kinds = {"mailet-mta": MailetPOP3, "twisted": TwistedPOP3,
                 "dovecot": partial(DovecotPOP3, scheme=args.dovecot_scheme)}
        made = [kinds[name](work / name, boxes) for name in args.servers]
        print(f"mailboxes filled in {time.perf_counter() - t:.1f} s", flush=True)
        for target in made:
            targets.append(target.start())
        # Memory first, on processes that have not served the big mailboxes yet (a
        # process reuses memory it freed, which would hide the growth measured).
        idle_users = [u for u in boxes if is_idle(u)]
        memory = {t.name: idle_sessions(t, idle_users) for t in targets} if idle_users else {}
        mailet = next((t for t in targets if t.name == "mailet-mta"), None)
        if mailet is not None:
            memory["mailet-mta base"] = base_breakdown(mailet.pid)
        warm_up(targets, boxes)
        results = measure(targets, boxes, repeats)
        if mailet is not None:
            memory["mailet-mta base"]["pss_after_runs"] = pss_kib(mailet.pid)
        profile = profile_session(mailet, f"r{sizes[1]}@example.com") \
            if args.profile and mailet else None
    finally:
        for target in targets:
            target.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarize(results)
    met = targets_met(summary, sizes)
    ratios = repeat_ratios(results)
    report(summary, met, ratios)
    report_memory(memory)
    write_json(args.json, {"machine": info, "repeats": repeats, "message_size": SIZE,
                           "runs": results, "median": summary, "targets": met,
                           "retr_ratio_per_repeat": ratios,
                           "memory": memory,
                           "profile": profile,
                           "loadavg_end": os.getloadavg()})


if __name__ == "__main__":
    main()
