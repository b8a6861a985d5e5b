"""Helpers shared by the protocol benchmarks: process figures, Maildir files, tables.

Everything here reads Linux ``/proc``; the benchmarks run on Linux only.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the process under test ----------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` so far (/proc/<pid>/stat), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (from the ppid field of /proc/<pid>/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants, the exited ones included.

    Each live process counts utime+stime plus cutime+cstime (the children it has
    reaped); a process that exits moves its time into its parent's cutime/cstime once
    reaped, so the sum stays whole (Postfix's smtpd/cleanup/qmgr/virtual come and go).
    """
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])
    return total / CLK_TCK


def memory_kib(pid: int) -> dict:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def pss_kib(pid: int) -> dict:
    """Pss and its anonymous/file/shmem parts of ``pid`` in KiB (smaps_rollup)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem", "Rss"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def tree_pss_kib(pid: int) -> int:
    """PSS summed over ``pid`` and its descendants, in KiB."""
    return sum(pss_kib(p).get("Pss", 0) for p in process_tree(pid))


def smaps_breakdown(pid: int, top: int = 12) -> list[tuple[str, int]]:
    """PSS of ``pid`` by mapping (file name, ``[heap]``, ``[anon]``…), largest first, KiB."""
    import collections
    by_name: collections.Counter = collections.Counter()
    name = "[anon]"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 6)
            if len(first) >= 5 and "-" in first[0] and ":" not in first[0]:
                name = first[5].strip() if len(first) > 5 else "[anon]"
            elif line.startswith("Pss:"):
                by_name[name] += int(line.split()[1])
    return by_name.most_common(top)


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (writing 5 to clear_refs, Linux ≥ 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class LineSocket:
    """A blocking loopback client socket (TCP_NODELAY) with a receive buffer."""

    def __init__(self, port: int, timeout: float = 120):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def _line(self) -> bytes:
        """The next line, without its CRLF."""
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 30.0) -> str:
    """The text of ``path`` once a process wrote it (its 'ready' marker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args} wrote no {path} in {timeout}s")


def stop_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit, so a benchmark stopped by its pid still runs its
    ``finally`` blocks and stops the servers it started."""
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM by pid, SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# -- Maildir ----------------------------------------------------------------------------------
_counter = 0


def maildir_make(root: Path) -> Path:
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def maildir_deliver(root: Path, data: bytes) -> str:
    """Write one message the durable Maildir way: tmp → fsync → rename → fsync new/."""
    global _counter
    _counter += 1
    name = f"{time.time():.6f}.P{os.getpid()}Q{_counter}.bench"
    tmp, new = root / "tmp" / name, root / "new" / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, new)
    dfd = os.open(root / "new", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return name


def maildir_count(root: Path) -> int:
    return sum(1 for _ in os.scandir(root / "new"))


# -- messages and results ------------------------------------------------------------------
def make_message(size: int, sender: str, rcpt: str, n: int = 0) -> bytes:
    """A CRLF message of about ``size`` octets (headers included), no line starting '.'."""
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: bench {size} {n}\r\n"
            f"Message-ID: <bench.{size}.{n}@example.org>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


def server_list(choices):
    """An argparse ``type``: a comma-separated list of names, each one of ``choices``."""
    import argparse

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown server {', '.join(unknown) or '(none)'}; "
                f"choose from {', '.join(choices)}")
        return names
    return parse


def fresh_schema(base_url: str, prefix: str = "soak"):
    """(url of ``base_url`` with a new schema as its search_path, drop function): a
    fresh PostgreSQL database for one run, removed by the function."""
    import uuid

    import sqlalchemy as sa

    schema = f"{prefix}_" + uuid.uuid4().hex[:10]
    engine = sa.create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))

    def drop():
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
    return f"{base_url}?options=-csearch_path%3D{schema}", drop


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values, q: float):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))
    return values[k]


def machine() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": sys.version.split()[0],
            "kernel": platform.release(), "loadavg_start": os.getloadavg()}


def print_table(header: list[str], rows: list[list]) -> None:
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, sort_keys=True))
        print(f"results written to {path}")


# -- py-spy ----------------------------------------------------------------------------------
def start_profiler(pid: int, out: Path, rate: int = 200,
                   idle: bool = False) -> subprocess.Popen | None:
    """``py-spy record`` on ``pid`` (raw collapsed stacks, per thread) until
    stop_profiler(); with ``idle``, samples of waiting threads too."""
    import shutil
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    proc = subprocess.Popen([spy, "record", "-p", str(pid), "-o", str(out), "-f", "raw",
                             "-t", *(["--idle"] if idle else []), "-r", str(rate)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(1.0)             # py-spy attaches before the measured work starts
    return proc


def stop_profiler(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.send_signal(2)
        proc.wait(60)


def profile_summary(raw: Path, top: int = 15) -> dict:
    """Top frames of a py-spy raw profile: by thread, self time, and inclusive time.

    Line numbers are dropped so a function's samples add up; percentages are of all
    samples (threads waiting in a lock or poll count too, as py-spy reports them).
    """
    import collections
    import re
    threads, own, incl = (collections.Counter() for _ in range(3))
    total = 0
    for line in open(raw):
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack:
            continue
        n = int(n)
        total += n
        frames = stack.split(";")
        threads[re.sub(r"\s*\(\d+\)", "", frames[0])] += n
        names = [re.sub(r"\(([^)]*?)(:\d+)?\)", lambda m: "(" + "/".join(
            m.group(1).split("/")[-2:]) + ")", f) for f in frames[1:]]
        if names:
            own[names[-1]] += n
        for name in set(names):
            incl[name] += n

    def pct(counter):
        return [(name, round(100 * c / total, 1)) for name, c in counter.most_common(top)]
    return {"samples": total, "threads": pct(threads), "self": pct(own),
            "inclusive": pct(incl)}


def print_profile(summary: dict) -> None:
    print(f"profile: {summary['samples']} samples")
    for title in ("threads", "self", "inclusive"):
        print(f"  {title}:")
        for name, p in summary[title]:
            print(f"    {p:5.1f}%  {name}")
