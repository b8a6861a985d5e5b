"""IMAP: Dovecot 2.3's imapd against mailet-mta's IMAP server on the same mailboxes.

    python bench/imap.py [--quick] [--servers dovecot,mailet-mta] [--sizes 10000,100000]
                         [--repeats 3] [--fetch 1000] [--idle 100] [--json FILE]
                         [--profile DIR]

Mailboxes of ``--sizes`` 10 KB messages (10,000 and 100,000; ``--quick``: 1,000 and
10,000). Per mailbox and server, median of ``--repeats``: login, ``SELECT INBOX``,
``FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)``, ``UID SEARCH UNSEEN``, then
``FETCH n BODY.PEEK[]`` of the first ``--fetch`` messages one command at a time
(messages/s), and the IDLE push latency: a session in ``IDLE`` on the mailbox, a mail
delivered, the time until its untagged ``EXISTS`` (median of ``--pushes``). Memory:
``--idle`` sessions logged in with ``INBOX`` selected (a 10-message mailbox); the
growth of the PSS summed over the server's process tree from the first half of the
sessions to all of them, per session (the first half pays the one-time costs: thread
pools, allocator arenas, caches; the growth before it is reported too). The servers
take turns mailbox by mailbox, their order rotating every repeat; one unmeasured
warm-up session per mailbox comes first (Dovecot indexes the hard-linked files there).

- ``dovecot``: bench/peers/dovecot.py, its own instance on loopback; the messages
  are delivered through its LMTP as bench/pop3.py does (100,000: hard links to a few
  files in ``Maildir/new``, named as Dovecot names its files). Its passwords are
  argon2id hashes at mailet-mta's memory and time cost (one lane), as in bench/pop3.py;
  ``--dovecot-scheme plain`` gives it ``{PLAIN}`` passwords instead.
  Push: the mail is handed to its LMTP (one session, as an MTA hands it on); the
  clock starts at the LMTP ``250``.
- ``mailet-mta``: ``mailet-mta serve`` with an ``imapservers:`` listener configured
  like POP3's. The mailboxes are filled before the server starts by direct store
  calls (a blob row and ``mailboxes.store_message`` per message, one transaction, as
  bench/pop3.py does; 100,000: one shared blob), not through SMTP. Push: the mail is
  sent to its own SMTP listener; the clock starts at the final ``250``. A version of
  mailet-mta without the ``imapservers`` key is skipped with a message.

``--profile DIR`` (needs ``py-spy``): each measured command of mailet-mta in the first
repeat runs under ``py-spy record`` attached to the server (200 samples/s, GIL holders
only); DIR gets one collapsed-stack file per size and command and a summary of the
functions holding the most samples.

The client is a small blocking socket client that reads each response up to its
tagged line in bulk and skips literals by their announced size.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

# Run as a script: put the checkout on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    LineSocket,
    machine,
    median,
    print_table,
    server_list,
    stop_on_sigterm,
    tree_cpu_seconds,
    tree_pss_kib,
    write_json,
)
from bench.pop3 import (
    PASSWORD,
    SCHEMES,
    SENDER,
    DovecotPOP3,
    clone_user,
    fill_mailet,
    message,
)
from tests.support.server import ServerProcess, base_config

SERVERS = ("dovecot", "mailet-mta")
REFERENCE = "dovecot"
IDLE_USER = "idle@example.com"
LITERAL = re.compile(rb"\{(\d+)\+?\}$")
MAX_RESPONSE = 1 << 30          # one response's bytes (a FETCH 1:* of 100,000 is ~10 MB)


class Client(LineSocket):
    """A blocking IMAP client: ``command`` returns every line up to the tagged one.

    It reads its buffer from an offset (``pos``) and drops what it has read only
    before it receives more: cutting the buffer at every line copied the rest of it,
    so a line cost in proportion to what one ``recv`` had brought (up to 1 MiB; 70 µs
    a line at 1 MiB against 1.6 µs at 16 KiB) and a server that sent faster was
    read slower."""

    def __init__(self, port: int, timeout: float = 300):
        super().__init__(port, timeout)
        self.n = 0
        self.pos = 0
        greeting = self._line()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(greeting.decode("latin-1"))

    def send(self, text: str) -> str:
        self.n += 1
        tag = f"b{self.n}"
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        return tag

    def response(self, tag: str) -> tuple[bytes, int]:
        """(tagged line, number of untagged lines); literals skipped by their size."""
        tagb, untagged, size = tag.encode() + b" ", 0, 0
        while True:
            line = self._line()
            size += len(line)
            while (m := LITERAL.search(line)) is not None:
                want = int(m.group(1))
                size += want
                while len(self.buf) - self.pos < want:
                    self._fill()
                self.pos += want
                line = self._line()             # the rest of the response line
                size += len(line)
            if size > MAX_RESPONSE:
                raise RuntimeError("response larger than the client's bound")
            if line.startswith(tagb):
                if not line[len(tagb):].startswith(b"OK"):
                    raise RuntimeError(line.decode("latin-1"))
                return line, untagged
            untagged += 1

    def _fill(self) -> None:
        self.buf, self.pos = self.buf[self.pos:], 0
        super()._fill()

    def _line(self) -> bytes:
        """The next line, without its CRLF."""
        while (i := self.buf.find(b"\r\n", self.pos)) < 0:
            self._fill()
        line, self.pos = self.buf[self.pos:i], i + 2
        return line

    def command(self, text: str) -> tuple[bytes, int]:
        return self.response(self.send(text))

    def login(self, user: str, password: str) -> None:
        self.command(f'LOGIN "{user}" "{password}"')

    def close(self) -> None:
        try:
            self.command("LOGOUT")
        except (OSError, RuntimeError):
            pass
        finally:
            self.sock.close()


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return 1000 * (time.perf_counter() - t)


class Profiler:
    """``py-spy record`` attached to a server process around one piece of work."""

    def __init__(self, directory: str | None):
        self.directory = Path(directory) if directory else None
        self.files: list[Path] = []

    @contextlib.contextmanager
    def around(self, target, name: str):
        if self.directory is None or target.name != "mailet-mta":
            yield
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        out = self.directory / f"{name}.raw"
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(target.pid),
             "-r", "200", "-g", "-f", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)                     # attached before the work starts
        try:
            yield
        finally:
            time.sleep(0.2)
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            if out.exists():
                self.files.append(out)

    def summary(self, top: int = 12) -> None:
        if self.directory is None:
            return
        lines = []
        for path in self.files:
            own: collections.Counter = collections.Counter()
            total = 0
            for row in path.read_text().splitlines():
                stack, _, n = row.rpartition(" ")
                total += int(n)
                own[stack.split(";")[-1]] += int(n)
            lines.append(f"{path.stem}: {total} samples (200/s, GIL held)")
            lines += [f"  {n:6d} {frame}" for frame, n in own.most_common(top)]
        (self.directory / "summary.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))


NO_PROFILE = Profiler(None)


def session(target, user: str, count: int, fetch: int, pushes: int,
            profile: Profiler = NO_PROFILE) -> dict:
    out: dict = {}
    c = Client(target.imap_port)
    try:
        out["login_ms"] = timed(c.login, user, PASSWORD)
        with profile.around(target, f"{count}-select"):
            t = time.perf_counter()
            line, _ = c.command("SELECT INBOX")
            out["select_ms"] = 1000 * (time.perf_counter() - t)
        with profile.around(target, f"{count}-fetch-all"):
            t = time.perf_counter()
            _, lines = c.command("FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)")
            out["fetch_all_ms"] = 1000 * (time.perf_counter() - t)
        if lines < count:
            raise RuntimeError(f"{target.name}: FETCH 1:* gave {lines} of {count} messages")
        with profile.around(target, f"{count}-uid-search-unseen"):
            out["uid_search_unseen_ms"] = timed(c.command, "UID SEARCH UNSEEN")
        n = min(fetch, count)
        with profile.around(target, f"{count}-body-peek"):
            t = time.perf_counter()
            for i in range(1, n + 1):
                c.command(f"FETCH {i} BODY.PEEK[]")
            out["body_per_s"] = n / (time.perf_counter() - t)
        latencies = []
        for k in range(pushes):
            tag = c.send("IDLE")
            if not c._line().startswith(b"+"):
                raise RuntimeError(f"{target.name}: IDLE refused")
            t0 = target.deliver(user, k)
            while b"EXISTS" not in c._line():
                pass
            latencies.append(1000 * (time.perf_counter() - t0))
            c.sock.sendall(b"DONE\r\n")
            c.response(tag)
        out["idle_push_ms"] = median(latencies)
    finally:
        c.close()
    return out


def idle_sessions(target, count: int) -> dict:
    for _ in range(3):                      # one-time memory of the first logins
        warm = Client(target.imap_port)
        warm.login(IDLE_USER, PASSWORD)
        warm.close()
    time.sleep(0.5)
    before = tree_pss_kib(target.pid)
    clients = []
    half = count // 2

    def open_until(n: int) -> None:
        while len(clients) < n:
            c = Client(target.imap_port)
            c.login(IDLE_USER, PASSWORD)
            c.command("SELECT INBOX")
            clients.append(c)
        time.sleep(1.0)

    try:
        open_until(half)
        middle = tree_pss_kib(target.pid)
        open_until(count)
        after = tree_pss_kib(target.pid)
    finally:
        for c in clients:
            c.close()
    return {"sessions": count, "pss_before_kib": before, "pss_half_kib": middle,
            "pss_after_kib": after,
            "first_half_per_session_kib": (middle - before) / max(1, half),
            "per_session_kib": (after - middle) / max(1, count - half)}


class DovecotIMAP(DovecotPOP3):
    """The Dovecot instance of bench/pop3.py; its IMAP listener is the one used."""

    def deliver(self, user: str, k: int) -> float:
        """Hand one mail to Dovecot's LMTP as an MTA would; the time of its ``250``.

        Dovecot stores it and updates the uidlist, the index and the cache itself, as
        it does for the mail it already holds; a file dropped into ``new/`` behind its
        back would instead be found, read and indexed by the next SELECT."""
        lmtp = smtplib.LMTP(str(self.peer.workdir / "run" / "lmtp"))
        try:
            lmtp.sendmail(SENDER, [user], message(10**6 + k))
            return time.perf_counter()
        finally:
            lmtp.quit()

    def stop(self):
        self.peer.stop()


class Unsupported(RuntimeError):
    """This mailet-mta has no IMAP server (the ``imapservers`` key is unknown)."""


def mailet_imap_config(data: Path) -> dict:
    config = base_config(
        data, servernames=["example.com"],
        smtp=[{"name": "smtp", "listen": "tcp:0:interface=127.0.0.1",
               "authRequired": True, "authorizedAddresses": ["127.0.0.1/32"]}],
        pop3=[], logging={"level": "warn"})
    config["imapservers"] = [{"name": "imap", "listen": "tcp:0:interface=127.0.0.1"}]
    return config


def check_imap_supported(config: dict) -> None:
    import yaml

    from mailet_mta.config.loader import load_config_text
    try:
        load_config_text(yaml.safe_dump(config), "yaml")
    except Exception as exc:
        if "imapservers" in str(exc):
            raise Unsupported("mailet-mta skipped: this version has no IMAP server "
                              f"({exc})") from exc
        raise


class MailetIMAP:
    name = "mailet-mta"

    def __init__(self, workdir: Path, boxes: dict):
        self.data = workdir / "var"
        config = mailet_imap_config(self.data)
        check_imap_supported(config)
        self.server = ServerProcess(workdir, config, name="mailet-mta")
        template = None
        for user, (count, shared) in boxes.items():
            if template is None:
                self.server.add_user(user, PASSWORD)
                template = user
            else:
                clone_user(self.data, template, user)
            fill_mailet(self.data, user, count, shared)

    def start(self):
        self.server.start()
        self.pid = self.server.proc.pid
        self.imap_port = self.server.port("imap")
        self.smtp_port = self.server.port("smtp")
        return self

    def deliver(self, user: str, k: int) -> float:
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=60) as s:
            s.sendmail("sender@example.org", [user], message(10**6 + k))
            return time.perf_counter()

    def stop(self):
        self.server.stop()


def measure(targets, boxes, repeats, fetch, pushes, profile: Profiler = NO_PROFILE) -> dict:
    results: dict = {}
    for rep in range(repeats):
        order = targets[rep % len(targets):] + targets[:rep % len(targets)]
        for user, (count, _shared) in boxes.items():
            if user == IDLE_USER:
                continue
            for t in order:
                cpu0 = tree_cpu_seconds(t.pid)
                r = session(t, user, count, fetch, pushes,
                            profile if rep == 0 else NO_PROFILE)
                r["server_cpu_ms"] = 1000 * (tree_cpu_seconds(t.pid) - cpu0)
                results.setdefault(str(count), {}).setdefault(t.name, []).append(r)
                print(f"  repeat {rep + 1} {t.name:10} {count:>7} msgs  SELECT "
                      f"{r['select_ms']:8.1f} ms  FETCH 1:* {r['fetch_all_ms']:8.1f}  "
                      f"SEARCH {r['uid_search_unseen_ms']:7.1f}  BODY[] "
                      f"{r['body_per_s']:6.0f}/s  IDLE push {r['idle_push_ms']:6.1f} ms",
                      flush=True)
    return results


FIELDS = ("login_ms", "select_ms", "fetch_all_ms", "uid_search_unseen_ms", "body_per_s",
          "idle_push_ms", "server_cpu_ms")


def summarize(results) -> dict:
    return {count: {name: {f: median([r.get(f) for r in reps]) for f in FIELDS}
                    for name, reps in by_server.items()}
            for count, by_server in results.items()}


def report(summary, memory) -> None:
    rows = []
    for count, cell in summary.items():
        for name, v in cell.items():
            rows.append([count, name, *(v[f] for f in FIELDS)])
    print()
    print_table(["messages", "server", "login ms", "SELECT ms", "FETCH 1:* ms",
                 "UID SEARCH ms", "BODY[] msg/s", "IDLE push ms", "server cpu ms"], rows)
    for name, m in memory.items():
        print(f"{name:10} {m['sessions']} idle sessions: {m['per_session_kib']:.1f} KiB each "
              f"(second half; first half {m['first_half_per_session_kib']:.1f} KiB each)")



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1,000 and 10,000 messages, 1 repeat")
    parser.add_argument("--servers", type=server_list(SERVERS), default="dovecot,mailet-mta",
                        help=f"comma-separated, of: {', '.join(SERVERS)}")
    parser.add_argument("--sizes", type=lambda t: [int(v) for v in t.split(",")],
                        default=None, help="mailbox sizes (10000,100000)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats (3)")
    parser.add_argument("--fetch", type=int, default=1000,
                        help="messages fetched whole with BODY.PEEK[] per session")
    parser.add_argument("--pushes", type=int, default=10, help="IDLE pushes per session")
    parser.add_argument("--idle", type=int, default=100, help="idle sessions (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--dovecot-scheme", choices=SCHEMES, default="argon2id",
                        help="Dovecot's stored passwords: argon2id (as mailet-mta's "
                             "cost, one lane) or plain")
    parser.add_argument("--profile", help="py-spy profiles of mailet-mta's commands here")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    stop_on_sigterm()
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [10_000, 100_000])
    repeats = args.repeats or (1 if args.quick else 3)
    boxes = {f"r{n}@example.com": (n, n > 10_000) for n in sizes}
    boxes[IDLE_USER] = (10, False)
    info = machine()
    print(f"machine: {info['nproc']} x {info['cpu']}, load {info['loadavg_start']}")
    work = Path(tempfile.mkdtemp(prefix="bench-imap-"))
    targets = []
    kinds = {"dovecot": partial(DovecotIMAP, scheme=args.dovecot_scheme),
             "mailet-mta": MailetIMAP}
    try:
        made = []
        for name in args.servers:
            try:
                made.append(kinds[name](work / name, boxes))
            except Unsupported as exc:
                print(exc, flush=True)
        for target in made:
            targets.append(target.start())
        memory = {t.name: idle_sessions(t, args.idle) for t in targets} if args.idle else {}
        for t in targets:
            for user in boxes:
                if user != IDLE_USER:
                    session(t, user, 0, 0, 0)
        profile = Profiler(args.profile)
        results = measure(targets, boxes, repeats, args.fetch, args.pushes, profile)
        profile.summary()
    finally:
        for target in targets:
            target.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
    summary = summarize(results)
    report(summary, memory)
    write_json(args.json, {"machine": info, "repeats": repeats, "runs": results,
                           "median": summary, "memory": memory,
                           "skipped": [n for n in args.servers
                                       if n not in {t.name for t in targets}],
                           "loadavg_end": os.getloadavg()})


if __name__ == "__main__":
    main()
