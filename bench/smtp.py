"""SMTP acceptance, end to end: mailet-mta against aiosmtpd and Twisted ESMTP peers.

    python bench/smtp.py [--quick] [--count 2000] [--repeats 3] [--json FILE]

Every server runs as its own process on 127.0.0.1 with a fresh data directory:

- ``mailet-mta``: ``python -m mailet_mta serve --config <generated yaml>``, pipeline
  root → transport → local-delivery (LocalDelivery); the relay and bounce processors
  are ToRepository. A mail counts when its row is in ``messages`` (what POP3 STAT sees).
- ``aiosmtpd``: bench/peers/aiosmtpd_maildir.py; a mail counts when its Maildir file
  is fsynced and renamed into new/ (before the 250).
- ``twisted``: bench/peers/twisted_smtp_maildir.py, the same with twisted.mail ESMTP.

For each size (1 KB, 100 KB) × connections (1, 16), ``--count`` messages per cell are
sent by bench/smtp_load.py (an asyncio client in its own process). Figures per cell,
median of ``--repeats``: messages/s from the client's first connect until the last
mail is in its mailbox, p50/p99 latency from MAIL to the final 250, and server CPU µs
per message (utime+stime from /proc/<pid>/stat). Then, for mailet-mta only: one
50 MB message (peak RSS growth, VmHWM) and 1,000 idle connections (RSS growth).
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
    cpu_seconds,
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
    start_profiler,
    stop_process,
    stop_profiler,
    wait_for_file,
    write_json,
)
from tests.support.server import ServerProcess, base_config

RCPT = "bench@example.com"
PASSWORD = "bench password 1"
PEERS = {"aiosmtpd": "aiosmtpd_maildir.py", "twisted": "twisted_smtp_maildir.py"}
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


def shipped_config(data: Path, log_level: str) -> dict:
    """conf/mailet-mta.yaml as shipped, with loopback listeners and no TLS: its first
    SMTP listener (port 25's settings) and its first POP3 listener on 127.0.0.1 port 0,
    the data under ``data``, logging at ``log_level`` to the server's log file."""
    import yaml
    config = yaml.safe_load((ROOT / "conf" / "mailet-mta.yaml").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("x-")}
    config["storage"]["data_dir"] = str(data)
    loopback = "tcp:0:interface=127.0.0.1"
    plain = ("tls", "requireSSL", "listen")
    config["smtpservers"] = [{**{k: v for k, v in config["smtpservers"][0].items()
                                 if k not in plain}, "listen": loopback}]
    config["pop3servers"] = [{**{k: v for k, v in config["pop3servers"][0].items()
                                 if k not in plain}, "listen": loopback}]
    config["logging"] = {**config.get("logging", {}), "level": log_level}
    return config


class MailetTarget:
    """mailet-mta serve as a child process; delivered = rows in ``messages``.

    ``shipped``: conf/mailet-mta.yaml (see :func:`shipped_config`) instead of the
    default pipeline with relay and bounces stored; ``log_level``: its logging level.
    """

    name = "mailet-mta"

    def __init__(self, workdir: Path, log_level: str = "warn", shipped: bool = False,
                 code: Path | None = None):
        data = workdir / "var"
        if shipped:
            config = shipped_config(data, log_level)
        else:
            config = base_config(
                data, servernames=["example.com"],
                smtp=[{"name": "smtp", "listen": "tcp:0:interface=127.0.0.1",
                       "authRequired": True, "authorizedAddresses": ["127.0.0.1/32"]}],
                pop3=[{"name": "pop3", "listen": "tcp:0:interface=127.0.0.1"}],
                processors=bench_processors(), logging={"level": log_level})
        self.server = ServerProcess(workdir, config, name="mailet-mta")
        if code is not None:        # another checkout's mailet_mta (an A/B run)
            self.name = f"mailet-mta@{code.name}"
            self.server.command = ["env", f"PYTHONPATH={code}", sys.executable, "-m",
                                   "mailet_mta", "serve", "--config",
                                   str(self.server.config_path)]
        self.db_path = data / "mailet-mta.sqlite3"
        self._db = None

    def start(self):
        self.server.add_user(RCPT, PASSWORD)
        self.server.start()
        self.pid = self.server.proc.pid
        self.port = self.server.port("smtp")
        self._db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True,
                                   check_same_thread=False)
        return self

    def delivered(self) -> int:
        return self._db.execute("SELECT count(*) FROM messages").fetchone()[0]

    def stop(self):
        if self._db is not None:
            self._db.close()
        self.server.stop()


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
    cpu0 = cpu_seconds(target.pid)
    watcher.start()
    load = run_load(target.port, connections, count, size)
    watcher.join(timeout)
    stop.set()
    if "at" not in found:
        raise RuntimeError(f"{target.name}: {goal - target.delivered()} of {count} mails "
                           f"not delivered after {timeout}s")
    cpu1 = cpu_seconds(target.pid)
    done = max(found["at"], load["end"])
    lat = load["latencies"]
    return {"rate": count / (done - load["start"]),
            "accept_rate": count / (load["end"] - load["start"]),
            "p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99),
            "cpu_us": 1e6 * (cpu1 - cpu0) / count, "errors": load["error_count"],
            "seconds": done - load["start"]}


def run_matrix(targets, sizes, conns, count, repeats) -> dict:
    results = {t.name: {} for t in targets}
    for rep in range(repeats):
        for size in sizes:
            for n in conns:
                for target in targets:
                    cell = run_cell(target, size, n, count)
                    results[target.name].setdefault(f"{size}x{n}", []).append(cell)
                    print(f"  repeat {rep + 1} {target.name:10} {size // 1024:>4} KB x{n:<2} "
                          f"{cell['rate']:8.0f} msg/s  p50 {cell['p50_ms']:6.1f} ms  "
                          f"p99 {cell['p99_ms']:6.1f} ms  cpu {cell['cpu_us']:7.0f} us",
                          flush=True)
    return results


def summarize(results) -> dict:
    out = {}
    for name, cells in results.items():
        for key, reps in cells.items():
            out.setdefault(key, {})[name] = {
                field: median([r[field] for r in reps])
                for field in ("rate", "accept_rate", "p50_ms", "p99_ms", "cpu_us", "errors")}
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
    """The issue's targets, each True/False (None when the cell was not run)."""
    def ratio(key):
        cell = summary.get(key)
        if not cell or "mailet-mta" not in cell:
            return None
        peers = [v["rate"] for k, v in cell.items() if not k.startswith("mailet-mta")]
        return cell["mailet-mta"]["rate"] / max(peers) if peers else None

    def p99_ok(key):
        cell = summary.get(key)
        if not cell or "mailet-mta" not in cell or len(cell) < 2:
            return None
        return cell["mailet-mta"]["p99_ms"] <= min(v["p99_ms"] for k, v in cell.items()
                                                   if not k.startswith("mailet-mta"))
    met = {}
    for size in sizes:
        for n in conns:
            key = f"{size}x{n}"
            goal = 1.5 if (n > 1 and size >= 100 * 1024) else 1.0
            r = ratio(key)
            met[f"rate {key} >= {goal}x faster peer"] = {"ratio": r, "met": None if r is None
                                                         else r >= goal}
            if n > 1:
                met[f"p99 {key} <= peers"] = {"met": p99_ok(key)}
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
            rows.append([f"{int(size) // 1024} KB", n, name, v["rate"], v["accept_rate"],
                         v["p50_ms"], v["p99_ms"], v["cpu_us"], v["errors"]])
    print()
    print_table(["size", "conns", "server", "msg/s e2e", "msg/s 250", "p50 ms", "p99 ms",
                 "cpu us/msg", "errors"], rows)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 messages, 1 repeat, 5 MB, 100 idle")
    parser.add_argument("--count", type=int, default=None, help="messages per cell (2000)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats (3)")
    parser.add_argument("--sizes", default="1024,102400")
    parser.add_argument("--connections", default="1,16")
    parser.add_argument("--servers", default="mailet-mta,aiosmtpd,twisted")
    parser.add_argument("--large", type=int, default=None, help="octets (50,000,000)")
    parser.add_argument("--idle", type=int, default=None, help="idle connections (1000)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", action="append", default=[], metavar="SIZExCONNS",
                        help="after the runs, py-spy mailet-mta on this cell (repeatable)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--log-level", default="warn",
                        help="mailet-mta's logging level (warn; the shipped one is info)")
    parser.add_argument("--shipped", action="store_true",
                        help="run mailet-mta with conf/mailet-mta.yaml (loopback, no TLS)")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                        help="also run mailet-mta from this checkout (e.g. a worktree of "
                             "main), interleaved with the others: an A/B run")
    args = parser.parse_args()
    count = args.count or (200 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 3)
    large_size = args.large if args.large is not None else (5_000_000 if args.quick
                                                            else 50_000_000)
    idle_n = args.idle if args.idle is not None else (100 if args.quick else 1000)
    sizes = [int(s) for s in args.sizes.split(",")]
    conns = [int(c) for c in args.connections.split(",")]
    names = args.servers.split(",")

    info = machine()
    print(f"machine: {info['nproc']} x {info['cpu']}, load {info['loadavg_start']}")
    work = Path(tempfile.mkdtemp(prefix="bench-smtp-"))
    targets = []
    try:
        for name in names:
            t = (MailetTarget(work / name, args.log_level, args.shipped)
                 if name == "mailet-mta" else PeerTarget(name, work / name))
            targets.append(t.start())
        if args.baseline:
            targets.append(MailetTarget(work / "baseline", args.log_level, args.shipped,
                                        args.baseline.resolve()).start())
        results = run_matrix(targets, sizes, conns, count, repeats)
        mailet = next((t for t in targets if t.name == "mailet-mta"), None)
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
                           "profiles": profiles,
                           "loadavg_end": __import__("os").getloadavg()})


if __name__ == "__main__":
    main()
