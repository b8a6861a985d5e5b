"""The log output's writer thread: lines written whole and in order, a stalled output
bounded (lines dropped and counted, the caller never blocked), everything written at
close."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

from mailet_mta.logging_setup import LogOutput


def _line(output: LogOutput, text: str) -> None:
    output.line("info", "mailet_mta.mail", text, {"text": text})


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "mail.log"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    out = os.fdopen(fd, "a", encoding="utf-8")
    yield path, out
    out.close()


def test_lines_from_several_threads_are_written_whole_and_each_in_its_order(log_file):
    path, out = log_file
    output = LogOutput(out)
    threads = [threading.Thread(target=lambda t=t: [_line(output, f"t={t} n={n} " + "x" * 150)
                                                    for n in range(2000)]) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert output.flush()
    seen: dict[str, list[int]] = {}
    lines = path.read_text().splitlines()
    for line in lines:
        match = re.fullmatch(r"\S+ \[mailet_mta\.mail#info\] t=(\d) n=(\d+) x{150}", line)
        assert match, line
        seen.setdefault(match[1], []).append(int(match[2]))
    assert seen == {str(t): list(range(2000)) for t in range(4)}
    assert output._thread is not None and output._thread.name == "log-writer"


def test_a_stalled_output_never_blocks_the_caller_and_drops_past_its_bound():
    """The reader of the pipe (the journal) stops reading: lines wait up to the bound,
    the rest are dropped and counted, and the count is written once it reads again."""
    read_end, write_end = os.pipe()
    out = os.fdopen(write_end, "w", encoding="utf-8")
    output = LogOutput(out, max_pending=64 * 1024)
    text = "y" * 200
    done = threading.Event()

    def write_many():
        for n in range(5000):           # ~1.2 MB: far more than the pipe and the bound
            _line(output, f"n={n} {text}")
        done.set()

    writer = threading.Thread(target=write_many, daemon=True)
    writer.start()
    # Without the writer thread the caller would block in write() once the pipe (64
    # KiB) is full, and never finish while nothing reads.
    assert done.wait(30), "a log call blocked on the stalled output"
    assert output._pending_size <= 64 * 1024
    # What waits for the writer stays within the bound; what it holds is one batch.
    assert output._queued < 5000 / 2

    received = bytearray()
    reader_done = threading.Event()

    def read_all():
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)
        reader_done.set()

    threading.Thread(target=read_all, daemon=True).start()
    assert output.flush(30)
    output.close()
    out.close()
    assert reader_done.wait(30)
    lines = received.decode().splitlines()
    kept = [line for line in lines if "#info]" in line]
    notices = [re.search(r"\[mailet_mta\.log#warn\] (\d+) log lines dropped: the log output "
                         r"did not keep up$", line) for line in lines if "#warn]" in line]
    assert notices and all(notices)
    dropped = sum(int(match[1]) for match in notices)
    assert dropped > 2500
    assert len(kept) + dropped == 5000
    numbers = [int(re.search(r"n=(\d+)", line)[1]) for line in kept]
    assert numbers == sorted(numbers) and numbers[0] == 0     # in order, the first kept
    os.close(read_end)


def test_workers_sharing_one_pipe_never_interleave_inside_a_line():
    """Two outputs (two worker processes' logs) write to one pipe whose reader is slow:
    every write is at most PIPE_BUF and cut between lines, so the pipe keeps each
    whole."""
    read_end, write_end = os.pipe()
    outs = [os.fdopen(os.dup(write_end), "w", encoding="utf-8") for _ in range(2)]
    os.close(write_end)
    outputs = [LogOutput(out) for out in outs]
    received = bytearray()

    def read_slowly():
        while chunk := os.read(read_end, 1000):
            received.extend(chunk)
            time.sleep(0.0005)

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    for n in range(1500):
        for w, output in enumerate(outputs):
            _line(output, f"w={w} n={n} " + "z" * 300)
    for output, out in zip(outputs, outs, strict=True):
        assert output.flush(30)
        output.close()
        out.close()
    reader.join(30)
    lines = received.decode().splitlines()
    assert len(lines) == 3000
    for line in lines:
        assert re.fullmatch(r"\S+ \[mailet_mta\.mail#info\] w=[01] n=\d+ z{300}", line), line
    os.close(read_end)


def test_close_writes_what_is_queued_and_later_lines_at_once(log_file):
    path, out = log_file
    output = LogOutput(out, json_lines=True)
    for n in range(100):
        _line(output, f"n={n}")
    output.close()
    assert len(path.read_text().splitlines()) == 100
    _line(output, "after close")
    assert path.read_text().splitlines()[-1].endswith('"text": "after close"}')
    assert output._thread is not None and not output._thread.is_alive()


def test_the_server_output_is_closed_at_exit(log_file):
    """start_logging registers close() with atexit, so a normal exit loses no line."""
    import subprocess
    import sys

    path, _out = log_file
    code = ("from mailet_mta import logging_setup\n"
            "from mailet_mta.config.model import LoggingConfig\n"
            f"logging_setup.start_logging(LoggingConfig(level='info', file={str(path)!r}))\n"
            "for n in range(3000):\n"
            "    logging_setup.output.line('info', 'mailet_mta.mail', f'n={n}', {})\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    lines = [line for line in path.read_text().splitlines() if "mailet_mta.mail#info" in line]
    assert len(lines) == 3000
