"""SMTP acceptance, end to end: mailet-mta against Postfix, aiosmtpd and Twisted ESMTP.

    python bench/smtp.py [--quick] [--count 2000] [--repeats 3] [--json FILE]
    python bench/smtp.py --servers mailet-mta-shipped,mailet-mta,postfix

Every server runs as its own process (group) on 127.0.0.1 with a fresh data directory:

- ``mailet-mta`` (tuned): ``python -m mailet_mta serve --config <generated yaml>``,
  pipeline root → transport → local-delivery (LocalDelivery); the relay and bounce
  processors are ToRepository; logging at ``warn``. A mail counts when its row is in
  ``messages`` (what POP3 STAT sees).
- ``mailet-mta-shipped``: the shipped ``conf/mailet-mta.yaml`` as it is (logging at
  ``info``, its pipeline, its spool threads and limits) with only what a loopback run
  must change: ``data_dir``, the ``smtp`` listener on ``127.0.0.1:0`` (no certificate
  here: its ``tls``/``requireSSL`` are dropped; the load uses neither), the
  ``submission``/``submissions``/``pop3s`` listeners left out, ``pop3`` on loopback.
- ``postfix``: Debian's Postfix 3.7 as its own instance (bench/peers/postfix.py),
  durable as shipped (queue file fsync before the 250, fsync of each Maildir file);
  a mail counts when ``virtual(8)`` has put it in Maildir ``new/``.
- ``aiosmtpd``: bench/peers/aiosmtpd_maildir.py; a mail counts when its Maildir file
  is fsynced and renamed into new/ (before the 250).
- ``twisted``: bench/peers/twisted_smtp_maildir.py, the same with twisted.mail ESMTP.

For each size (1 KB, 100 KB) × connections (1, 16), ``--count`` messages per cell are
sent by bench/smtp_load.py (an asyncio client in its own process). Figures per cell,
median of ``--repeats``: messages/s from the client's first connect until the last
mail is in its mailbox, p50/p99 latency from MAIL to the final 250, and server CPU µs
per message (utime+stime+cutime+cstime of the server's whole process tree from
/proc/<pid>/stat: all of Postfix's master/smtpd/cleanup/qmgr/trivial-rewrite/virtual,
also those that exited during the cell), and the ratio of each server's rate to
Postfix's in the same repeat. Then, for mailet-mta only: one 50 MB message (peak RSS
growth, VmHWM) and 1,000 idle connections (RSS growth).
"""

from __future__ import annotations

import argparse
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ROOT,
    fresh_schema,
    machine,
    maildir_count,
    median,
    memory_kib,
    percentile,
    print_profile,
    print_table,
    profile_summary,
    python_env,
    reset_peak_rss,
    server_list,
    start_profiler,
    stop_on_sigterm,
    stop_process,
    stop_profiler,
    tree_cpu_seconds,
    wait_for_file,
    write_json,
)
from bench.peers.postfix import PostfixPeer
from tests.support.server import ServerProcess, base_config

RCPT = "bench@example.com"
PASSWORD = "bench password 1"
PEERS = {"aiosmtpd": "aiosmtpd_maildir.py", "twisted": "twisted_smtp_maildir.py"}
SERVERS = ("mailet-mta", "mailet-mta-shipped", "postfix", "aiosmtpd", "twisted")
REFERENCE = "postfix"
STORE = {"class": "ToRepository"}


def bench_processors() -> dict:
    """The default pipeline with every processor that would relay or bounce stored."""
    import yaml
    default = yaml.safe_load((ROOT / "mailet_mta/config/defaults/default.yaml").read_text())
    processors = default["spoolmanager"]["processors"]
    for name in ("relay", "local-address-error", "relay-denied", "rrt-error", "bounces"):
        processors[name] = {"mailets": [{"match": "All", "class": "ToRepository",
                                         "parameters": {"repositoryPath": name}}]}
    return processors


def shipped_config(data: Path, log_level: str = "info") -> dict:
    """conf/mailet-mta.yaml as shipped, with only loopback listeners and ``data``,
    logging at ``log_level`` (the shipped level is info).

    The listeners keep every shipped setting but ``listen`` and TLS: there is no
    certificate on a bench machine and the load generator uses neither STARTTLS nor
    AUTH (127.0.0.0/8 is in the shipped ``authorizedAddresses`` and the mail is local).
    """
    import yaml
    config = yaml.safe_load((ROOT / "conf" / "mailet-mta.yaml").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("x-")}
    config["storage"]["data_dir"] = str(data)
    smtp = next(s for s in config["smtpservers"] if s["name"] == "smtp")
    pop3 = next(s for s in config["pop3servers"] if s["name"] == "pop3")
    for listener in (smtp, pop3):
        listener["listen"] = "tcp:0:interface=127.0.0.1"
        listener.pop("tls", None)
        listener.pop("requireSSL", None)
    config["smtpservers"], config["pop3servers"] = [smtp], [pop3]
    config.pop("imapservers", None)
    config["logging"] = {**config.get("logging", {}), "level": log_level}
    return config


def tuned_config(data: Path, log_level: str = "warn") -> dict:
    return base_config(
        data, servernames=["example.com"],
        smtp=[{"name": "smtp", "listen": "tcp:0:interface=127.0.0.1",
               "authRequired": True, "authorizedAddresses": ["127.0.0.1/32"]}],
        pop3=[{"name": "pop3", "listen": "tcp:0:interface=127.0.0.1"}], imap=[],
        processors=bench_processors(), logging={"level": log_level})


def _knows_workers(code: Path) -> bool:
    """Whether the checkout ``code`` has the ``workers`` key (one that has it must be
    told ``workers: 1``: its default is one process per core)."""
    model = code / "mailet_mta" / "config" / "model.py"
    return model.exists() and "\n    workers:" in model.read_text()


class MailetTarget:
    """mailet-mta serve as a child process; delivered = rows in ``messages``.

    ``shipped``: conf/mailet-mta.yaml (see :func:`shipped_config`, logging at info
    unless ``log_level`` says otherwise) instead of the tuned pipeline (warn); with
    ``workers`` above 1 it is named ``…-w<N>`` and its CPU is the supervisor's plus
    every worker's; ``code``: another checkout's mailet_mta (an A/B run);
    ``database``: a PostgreSQL URL (a fresh schema in it is used, then dropped; the
    name gets ``-pg``) instead of SQLite under the data directory.
    """

    def __init__(self, workdir: Path, shipped: bool = False, workers: int = 1,
                 log_level: str | None = None, code: Path | None = None,
                 database: str | None = None):
        self.name = "mailet-mta-shipped" if shipped else "mailet-mta"
        if database:
            self.name += "-pg"
        if workers != 1:
            self.name += f"-w{workers}"
        data = workdir / "var"
        if shipped:
            config = shipped_config(data, log_level or "info")
        else:
            config = tuned_config(data, log_level or "warn")
        config["workers"] = workers
        self.url, self._drop = fresh_schema(database, "bench") if database else (None, None)
        if self.url:
            config["storage"]["url"] = self.url
        if code is not None:        # an older checkout may not know these keys
            if workers == 1 and not _knows_workers(code):
                config.pop("workers")
            if not config.get("imapservers"):
                config.pop("imapservers", None)
        self.server = ServerProcess(workdir, config, name="mailet-mta")
        if code is not None:        # another checkout's mailet_mta (an A/B run)
            self.name = f"mailet-mta{'-pg' if database else ''}@{code.name}"
            self.server.command = ["env", f"PYTHONPATH={code}", sys.executable, "-m",
                                   "mailet_mta", "serve", "--config",
                                   str(self.server.config_path)]
        self.db_path = data / "mailet-mta.sqlite3"
        self._db = None

    def start(self):
        self.server.add_user(RCPT, PASSWORD)
        self.server.start()
        self.pid = self.server.proc.pid
        self.pids = [self.pid] + [w["pid"] for w in self.server.info().get("workers", [])]
        self.port = self.server.port("smtp")
        if self.url:
            import sqlalchemy as sa
            self._engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
            self._db = self._engine.connect()
            self._query = lambda sql: self._db.exec_driver_sql(sql).fetchall()
        else:
            self._db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True,
                                       check_same_thread=False)
            self._query = lambda sql: self._db.execute(sql).fetchall()
        return self

    def delivered(self) -> int:
        return self._query("SELECT count(*) FROM messages")[0][0]

    def per_worker(self) -> dict:
        """Connections and mails each worker took, from the nodes' last heartbeats."""
        rows = self._query("SELECT name, info FROM nodes ORDER BY name")
        return {name: {k: v for k, v in json.loads(info or "{}").items()
                       if k in ("connections", "accepted")} for name, info in rows}

    def stop(self):
        if self._db is not None:
            self._db.close()
        self.server.stop()
        if self._drop is not None:
            self._engine.dispose()
            self._drop()


class PostfixTarget:
    """Postfix as its own instance (bench/peers/postfix.py); delivered = Maildir new/."""

    name = "postfix"

    def __init__(self, workdir: Path):
        self.peer = PostfixPeer(workdir, [RCPT])

    def start(self):
        self.peer.start()
        self.pid, self.port = self.peer.pid, self.peer.port
        return self

    def delivered(self) -> int:
        return self.peer.delivered()

    def stop(self):
        self.peer.stop()


def make_target(name: str, workdir: Path):
    if name in ("mailet-mta", "mailet-mta-shipped"):
        return MailetTarget(workdir, shipped=name == "mailet-mta-shipped")
    if name == "postfix":
        return PostfixTarget(workdir)
    return PeerTarget(name, workdir)


class PeerTarget:
    """A peer script from bench/peers; delivered = files in Maildir new/."""

    def __init__(self, name: str, workdir: Path):
        self.name = name
        self.script = ROOT / "bench" / "peers" / PEERS[name]
        self.maildir = workdir / "Maildir"
        self.ready = workdir / "port"
        self.log = workdir / f"{name}.log"
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), "--maildir", str(self.maildir),
             "--ready", str(self.ready)], stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT, env=python_env())
        self.port = int(wait_for_file(self.ready, self.proc))
        self.pid = self.proc.pid
        return self

    def delivered(self) -> int:
        return maildir_count(self.maildir)

    def stop(self):
        stop_process(self.proc)


def run_load(port: int, connections: int, count: int, size: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "smtp_load.py"), "--port", str(port),
         "--connections", str(connections), "--count", str(count), "--size", str(size),
         "--rcpt", RCPT], capture_output=True, text=True, env=python_env(), timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def watch_delivery(target, goal: int, stop: threading.Event, found: dict) -> None:
    """Poll the target's delivered count every 5 ms; record when it reaches ``goal``."""
    while not stop.is_set():
        if target.delivered() >= goal:
            found["at"] = time.monotonic()
            return
        time.sleep(0.005)


def run_cell(target, size: int, connections: int, count: int, timeout: float = 600) -> dict:
    goal = target.delivered() + count
    found, stop = {}, threading.Event()
    watcher = threading.Thread(target=watch_delivery, args=(target, goal, stop, found))
    cpu0 = tree_cpu_seconds(target.pid)
    watcher.start()
    load = run_load(target.port, connections, count, size)
    watcher.join(timeout)
    stop.set()
    if "at" not in found:
        raise RuntimeError(f"{target.name}: {goal - target.delivered()} of {count} mails "
                           f"not delivered after {timeout}s")
    cpu1 = tree_cpu_seconds(target.pid)
    done = max(found["at"], load["end"])
    lat = load["latencies"]
    return {"rate": count / (done - load["start"]),
            "accept_rate": count / (load["end"] - load["start"]),
            "p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99),
            "cpu_us": 1e6 * (cpu1 - cpu0) / count, "errors": load["error_count"],
            "seconds": done - load["start"]}


def run_matrix(targets, sizes, conns, count, repeats) -> dict:
    """Every cell on every server in turn; the order of servers rotates each repeat.

    Each cell also gets its rate's ratio to Postfix's in the same repeat
    (``ratio_postfix``), so a burst of load from elsewhere cancels out of the ratio.
    """
    results = {t.name: {} for t in targets}
    for rep in range(repeats):
        order = targets[rep % len(targets):] + targets[:rep % len(targets)]
        for size in sizes:
            for n in conns:
                round_ = {}
                for target in order:
                    cell = run_cell(target, size, n, count)
                    round_[target.name] = cell
                    results[target.name].setdefault(f"{size}x{n}", []).append(cell)
                    print(f"  repeat {rep + 1} {target.name:18} {size // 1024:>4} KB x{n:<2} "
                          f"{cell['rate']:8.0f} msg/s  p50 {cell['p50_ms']:6.1f} ms  "
                          f"p99 {cell['p99_ms']:6.1f} ms  cpu {cell['cpu_us']:7.0f} us",
                          flush=True)
                ref = round_.get(REFERENCE)
                for cell in round_.values():
                    cell["ratio_postfix"] = cell["rate"] / ref["rate"] if ref else None
    return results


def summarize(results) -> dict:
    out = {}
    for name, cells in results.items():
        for key, reps in cells.items():
            out.setdefault(key, {})[name] = {
                field: median([r[field] for r in reps])
                for field in ("rate", "accept_rate", "p50_ms", "p99_ms", "cpu_us", "errors",
                              "ratio_postfix")}
    return out


def on_fresh_server(workdir: Path, measure, arg) -> dict:
    """Run a memory measurement on a new mailet-mta process, warmed up by 20 mails.

    A process that already served the matrix reuses memory it freed, which would
    hide part of the growth being measured.
    """
    target = MailetTarget(workdir).start()
    try:
        run_cell(target, 1024, 1, 20)
        return measure(target, arg)
    finally:
        target.stop()


def large_message(target, size: int) -> dict:
    """Peak RSS growth of the server while it accepts and delivers one ``size`` mail."""
    time.sleep(0.5)
    reset = reset_peak_rss(target.pid)
    before = memory_kib(target.pid)
    cell = run_cell(target, size, 1, 1)
    after = memory_kib(target.pid)
    return {"size": size, "seconds": cell["seconds"], "hwm_reset": reset,
            "rss_before_kib": before["VmRSS"], "hwm_before_kib": before["VmHWM"],
            "hwm_after_kib": after["VmHWM"],
            "peak_growth_mib": (after["VmHWM"] - before["VmHWM"]) / 1024}


def idle_connections(target, count: int) -> dict:
    """RSS growth with ``count`` connections open and idle after EHLO."""
    time.sleep(0.5)
    before = memory_kib(target.pid)
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", target.port), timeout=30)
            f = s.makefile("rb")
            assert f.readline().startswith(b"220")
            s.sendall(b"EHLO idle.example\r\n")
            while (line := f.readline())[3:4] == b"-":
                pass
            assert line.startswith(b"250"), line
            socks.append((s, f))
        time.sleep(1.0)
        after = memory_kib(target.pid)
    finally:
        for s, f in socks:
            f.close()
            s.close()
    return {"connections": count, "rss_before_kib": before["VmRSS"],
            "rss_after_kib": after["VmRSS"],
            "growth_mib": (after["VmRSS"] - before["VmRSS"]) / 1024,
            "per_connection_kib": (after["VmRSS"] - before["VmRSS"]) / count}


def profile_cell(target, cell: str, count: int, out: Path) -> dict:
    """An extra, unmeasured run of one cell ("102400x16") under py-spy."""
    size, n = (int(v) for v in cell.split("x"))
    spy = start_profiler(target.pid, out)
    try:
        figures = run_cell(target, size, n, count)
    finally:
        stop_profiler(spy)
    summary = profile_summary(out) if spy is not None and out.exists() else None
    print(f"\nprofile of {target.name} at {cell} ({figures['rate']:.0f} msg/s under "
          f"py-spy), raw stacks in {out}")
    if summary:
        print_profile(summary)
    return {"cell": cell, "figures": figures, "summary": summary, "raw": str(out)}


def targets_met(summary, large, idle, sizes, conns) -> dict:
    """Issue targets as True/False (None when not run), for each mailet-mta variant.

    Rates as median ratios to Postfix in the same repeats: ≥ 2× at 16 connections,
    ≥ 1.5× at 1; p99 at 1 KB × 16 ≤ 20 ms. Without Postfix in the run, the rate targets
    are not judged.
    """
    met = {}
    variants = sorted({name for cell in summary.values() for name in cell
                       if name.startswith("mailet-mta")})
    for name in variants:
        for size in sizes:
            for n in conns:
                key = f"{size}x{n}"
                cell = summary.get(key, {}).get(name)
                goal = 2.0 if n > 1 else 1.5
                r = cell.get("ratio_postfix") if cell else None
                met[f"{name} rate {key} >= {goal}x postfix"] = {
                    "ratio": r, "met": None if r is None else r >= goal}
        cell = summary.get("1024x16", {}).get(name)
        if cell:
            met[f"{name} p99 1024x16 <= 20 ms"] = {"value": cell["p99_ms"],
                                                  "met": cell["p99_ms"] <= 20}
    if large:
        met["50 MB peak RSS growth < 20 MB"] = {"value": large["peak_growth_mib"],
                                                "met": large["peak_growth_mib"] < 20}
    if idle:
        met["1,000 idle connections < 20 MB RSS"] = {"value": idle["growth_mib"],
                                                     "met": idle["growth_mib"] < 20}
    return met


def report(summary, large, idle, met) -> None:
    rows = []
    for key, cell in summary.items():
        size, n = key.split("x")
        for name, v in cell.items():
            rows.append([f"{int(size) // 1024} KB", n, name, v["rate"], v["ratio_postfix"],
                         v["accept_rate"], v["p50_ms"], v["p99_ms"], v["cpu_us"],
                         v["errors"]])
    print()
    print_table(["size", "conns", "server", "msg/s e2e", "x postfix", "msg/s 250", "p50 ms",
                 "p99 ms", "cpu us/msg", "errors"], rows)
    if large:
        print(f"\n{large['size'] / 1e6:.0f} MB message: {large['seconds']:.2f} s, peak RSS "
              f"growth {large['peak_growth_mib']:.1f} MiB (VmHWM reset: {large['hwm_reset']})")
    if idle:
        print(f"{idle['connections']} idle connections: RSS growth {idle['growth_mib']:.1f} MiB"
              f" ({idle['per_connection_kib']:.1f} KiB each)")
    print()
    for what, v in met.items():
        extra = f" ({v['ratio']:.2f}x)" if v.get("ratio") is not None else (
            f" ({v['value']:.1f})" if v.get("value") is not None else "")
        status = {True: "met", False: "MISSED", None: "not run"}[v["met"]]
        print(f"  {status:7} {what}{extra}")


def worker_spread(targets) -> dict:
    """How the work of each mailet-mta with workers spread over them (printed)."""
    multi = [t for t in targets if isinstance(t, MailetTarget) and len(t.pids) > 1]
    if not multi:
        return {}
    time.sleep(11)                         # one heartbeat: the counters are recorded
    spread = {t.name: t.per_worker() for t in multi}
    for name, workers in spread.items():
        print(f"{name}: " + ", ".join(f"{node}: {v.get('connections', 0)} connections, "
                                      f"{v.get('accepted', 0)} mails"
                                      for node, v in workers.items()))
    return spread


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 messages, 1 repeat, 5 MB, 100 idle")
    parser.add_argument("--count", type=int, default=None, help="messages per cell (2000)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats (3)")
    parser.add_argument("--sizes", default="1024,102400")
    parser.add_argument("--connections", default="1,16")
    parser.add_argument("--servers", type=server_list(SERVERS),
                        default="mailet-mta,mailet-mta-shipped,postfix,aiosmtpd,twisted",
                        help=f"comma-separated, of: {', '.join(SERVERS)}")
    parser.add_argument("--workers", default="1", metavar="N[,N…]",
                        help="mailet-mta's workers setting; several values run one "
                             "mailet-mta per value, interleaved (e.g. 1,2)")
    parser.add_argument("--large", type=int, default=None, help="octets (50,000,000)")
    parser.add_argument("--idle", type=int, default=None, help="idle connections (1000)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", action="append", default=[], metavar="SIZExCONNS",
                        help="after the runs, py-spy mailet-mta on this cell (repeatable)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--log-level", default=None,
                        help="mailet-mta's logging level (default: warn tuned, info shipped)")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT", action="append",
                        default=[],
                        help="also run mailet-mta from this checkout (e.g. a worktree of "
                             "main), interleaved with the others: an A/B run; repeatable "
                             "(checkouts with different directory names)")
    parser.add_argument("--database", metavar="URL",
                        help="run every mailet-mta on this PostgreSQL (a fresh schema "
                             "each, dropped afterwards), e.g. "
                             "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    stop_on_sigterm()
    count = args.count or (200 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 3)
    large_size = args.large if args.large is not None else (5_000_000 if args.quick
                                                            else 50_000_000)
    idle_n = args.idle if args.idle is not None else (100 if args.quick else 1000)
    sizes = [int(s) for s in args.sizes.split(",")]
    conns = [int(c) for c in args.connections.split(",")]
    names = args.servers

    info = machine()
    print(f"machine: {info['nproc']} x {info['cpu']}, load {info['loadavg_start']}")
    work = Path(tempfile.mkdtemp(prefix="bench-smtp-"))
    targets = []
    try:
        for name in names:
            if name.startswith("mailet-mta"):
                for n in (int(w) for w in args.workers.split(",")):
                    targets.append(MailetTarget(work / f"{name}-w{n}",
                                                shipped=name == "mailet-mta-shipped",
                                                workers=n, log_level=args.log_level,
                                                database=args.database).start())
            else:
                targets.append(make_target(name, work / name).start())
        # baselines take the configuration of the first mailet-mta named
        first = next((n for n in names if n.startswith("mailet-mta")), "mailet-mta")
        for i, baseline in enumerate(args.baseline):
            targets.append(MailetTarget(work / f"baseline-{i}", log_level=args.log_level,
                                        shipped=first == "mailet-mta-shipped",
                                        code=baseline.resolve(),
                                        database=args.database).start())
        results = run_matrix(targets, sizes, conns, count, repeats)
        spread = worker_spread(targets)
        mailet = next((t for t in targets if t.name.startswith("mailet-mta")), None)
        large = idle = None
        if mailet and large_size:
            large = on_fresh_server(work / "large", large_message, large_size)
        if mailet and idle_n:
            idle = on_fresh_server(work / "idle", idle_connections, idle_n)
        profiles = [profile_cell(mailet, cell, count, Path(tempfile.gettempdir())
                                 / f"mailet-mta-smtp-{cell}.pyspy.txt")
                    for cell in args.profile] if mailet else []
    finally:
        for t in targets:
            t.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
    summary = summarize(results)
    met = targets_met(summary, large, idle, sizes, conns)
    report(summary, large, idle, met)
    write_json(args.json, {"machine": info, "count": count, "repeats": repeats,
                           "client": "asyncio (bench/smtp_load.py)", "runs": results,
                           "median": summary, "large": large, "idle": idle, "targets": met,
                           "profiles": profiles, "worker_spread": spread,
                           "loadavg_end": __import__("os").getloadavg()})


if __name__ == "__main__":
    main()
