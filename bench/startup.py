"""Start-up time and base memory of ``mailet-mta`` commands and ``serve``.

    .venv/bin/python bench/startup.py [--repeats 7] [--peer /other/checkout/.venv/bin/python]

Each figure is the median wall time of ``--repeats`` runs, each a fresh process in a
fresh temporary directory (the embedded default configuration: SQLite under ./var):
``--help``, ``users list``, ``check-config`` of what ``init`` writes, and ``serve`` until
its first SMTP greeting on 127.0.0.1:2525, then its PSS (``/proc/PID/smaps_rollup``)
after it settled. The reference peer is the bare interpreter (``python -c pass``),
measured in the same run; ``--peer`` adds another checkout's interpreter (e.g. before a
change), measured after this one in the same run. ``serve`` binds the default ports: run it where
they are free (``unshare -n`` gives a private network namespace).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], cwd: str, stdin: str | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, input=stdin, text=True, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def greeting_time(python: str, cwd: str) -> tuple[float, float]:
    """(seconds to the first SMTP greeting, PSS MiB once settled) of one ``serve``."""
    start = time.perf_counter()
    proc = subprocess.Popen([python, "-m", "mailet_mta", "serve"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"serve exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", 2525), timeout=5) as sock:
                    if sock.recv(100).startswith(b"220"):
                        break
            except OSError:
                time.sleep(0.01)
        elapsed = time.perf_counter() - start
        time.sleep(3)
        pss = 0
        for line in Path(f"/proc/{proc.pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
        return elapsed, pss / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def module_count(python: str, args: list[str], cwd: str) -> int:
    out = subprocess.run([python, "-X", "importtime", "-m", "mailet_mta", *args], cwd=cwd,
                         text=True, capture_output=True).stderr
    return sum(1 for line in out.splitlines() if line.startswith("import time:")) - 1


def measure(python: str, repeats: int) -> dict[str, float]:
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as cwd:
        subprocess.run([python, "-m", "mailet_mta", "init", "site"], cwd=cwd, check=True,
                       stdout=subprocess.DEVNULL)
        conf = str(Path(cwd) / "site" / "mailet-mta.yaml")
        subprocess.run([python, "-m", "mailet_mta", "db", "upgrade"], cwd=cwd, check=True,
                       stdout=subprocess.DEVNULL)
        commands = {
            "python -c pass": [python, "-c", "pass"],
            "--help": [python, "-m", "mailet_mta", "--help"],
            "users list": [python, "-m", "mailet_mta", "users", "list"],
            "check-config": [python, "-m", "mailet_mta", "check-config", conf],
        }
        for _ in range(repeats):
            for name, cmd in commands.items():
                runs.setdefault(name, []).append(timed(cmd, cwd))
        for _ in range(max(1, repeats // 2)):
            ready, pss = greeting_time(python, cwd)
            runs.setdefault("serve to 220", []).append(ready)
            runs.setdefault("serve PSS MiB", []).append(pss)
        result = {name: statistics.median(values) for name, values in runs.items()}
        result["modules --help"] = module_count(python, ["--help"], cwd)
        result["modules users list"] = module_count(python, ["users", "list"], cwd)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--peer", help="another interpreter (checkout) to measure alike")
    args = parser.parse_args()
    print("load at start:", open("/proc/loadavg").read().strip())
    pythons = {"this": sys.executable}
    if args.peer:
        pythons["peer"] = args.peer
    results = {label: measure(python, args.repeats) for label, python in pythons.items()}
    print("load at end:", open("/proc/loadavg").read().strip())
    names = list(results["this"])
    print(f"{'':20}" + "".join(f"{label:>12}" for label in results)
          + ("   this/peer" if args.peer else ""))
    for name in names:
        row = [results[label][name] for label in results]
        line = f"{name:20}" + "".join(f"{value:12.3f}" for value in row)
        if args.peer and row[1]:
            line += f"{row[0] / row[1]:12.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    os.environ.pop("MAILET_MTA_WORKER", None)
    sys.exit(main())
