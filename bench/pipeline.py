"""Mails/s through a 10-pair pipeline (root → transport) on the durable SQLite spool.

Usage: python bench/pipeline.py [--mails 20000] [--repeats 3] [--profile]

Each mail is accepted the way SMTP hands one over (blob + spool row, group commit),
runs through root (5 pairs) and transport (5 pairs) of trivial matchers/mailets and is
ghosted; its removal from the spool is committed too. The clock stops when every mail's
final state is durable. Prints mails/s per repeat and the median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet import defer, reactor, task

from mailet_mta.api import GenericMailet, GenericMatcher, Mail, MailAddress
from mailet_mta.config.model import (
    MailetSpec,
    MatcherSpec,
    ProcessorSpec,
    ServerConfig,
    SpoolManagerConfig,
)
from mailet_mta.context import MailetContext
from mailet_mta.directory import Directory
from mailet_mta.logging_setup import TrailObserver
from mailet_mta.spool.intake import SpoolIntake
from mailet_mta.spool.processor import Pipeline
from mailet_mta.spool.run_queue import RunQueue
from mailet_mta.spool.runner import SpoolRunner
from mailet_mta.storage.blobs import BlobStore
from mailet_mta.storage.db import Database


class Tag(GenericMailet):
    """Sets one attribute (a trivial mailet)."""

    def init_mailet(self):
        self.attr = self.get_init_parameter("name", "t")

    def service(self, mail):
        mail.attributes[self.attr] = 1


class To(GenericMailet):
    def init_mailet(self):
        self.target = self.get_init_parameter("processor")

    def service(self, mail):
        mail.state = self.target


class Null(GenericMailet):
    def service(self, mail):
        mail.state = "ghost"


class DomainIs(GenericMatcher):
    """Recipients in the condition's domain (a trivial matcher)."""

    def match(self, mail):
        return [r for r in mail.recipients if r.domain == self.condition]


M = "__main__."


def processors():
    def pair(mailet, match=None, **params):
        return MailetSpec(mailet=M + mailet, parameters=params,
                          match=(MatcherSpec(name=M + "DomainIs", condition=match)
                                 if match else None))
    root = ([pair("Tag", "example.com", name=f"r{i}") for i in range(4)]
            + [pair("To", processor="transport")])
    transport = [pair("Tag", "example.com", name=f"t{i}") for i in range(4)] + [pair("Null")]
    return {"root": ProcessorSpec(name="root", mailets=root),
            "transport": ProcessorSpec(name="transport", mailets=transport),
            "error": ProcessorSpec(name="error", mailets=[pair("Null")])}


async def one_run(n: int) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="mailet-bench-"))
    db = Database("sqlite:///" + str(tmp / "spool.sqlite3"))
    db.upgrade()
    db.start()
    blobs = BlobStore(tmp / "blobs")
    config = ServerConfig(spoolmanager=SpoolManagerConfig(processors=processors()))
    queue = RunQueue(reactor)
    intake = SpoolIntake(db, blobs, queue, node_name="bench")
    ctx = MailetContext(config, Directory(db, ["example.com"], "postmaster@example.com"), blobs,
                        intake=intake)
    sm = SpoolRunner(db, blobs, queue, intake, Pipeline(config.spoolmanager, ctx, TrailObserver()),
                     threads=64, node_name="bench", poll_interval=3600)
    sm.startService()
    body = b"From: a@example.org\r\nSubject: bench\r\n\r\n" + b"x" * 1000 + b"\r\n"
    rcpt = [MailAddress.parse("user@example.com")]
    sender = MailAddress.parse("a@example.org")
    start = time.perf_counter()
    cpu_start = time.process_time()
    pending = []
    for _ in range(n):
        mail = Mail(sender=sender, recipients=rcpt, message=body)
        w = blobs.writer()
        w.write(body)
        pending.append(intake.accept(mail, w.finish_sync()))
        if len(pending) >= 256:
            await defer.gatherResults(pending)
            pending = []
    await defer.gatherResults(pending)
    while True:
        await sm.wait_idle()
        await db.writer.submit(lambda conn: None)    # the last completions are committed
        if sm._running == 0 and not queue.queued:
            break
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    await sm.stopService()
    await db.stop()
    return n / elapsed, cpu / n * 1e6


async def main(args):
    rates, cpus = [], []
    for i in range(args.repeats):
        rate, cpu = await one_run(args.mails)
        rates.append(rate)
        cpus.append(cpu)
        print(f"run {i + 1}: {rate:,.0f} mails/s, {cpu:,.0f} µs CPU per mail (all threads)")
    print(f"median: {statistics.median(rates):,.0f} mails/s, "
          f"{statistics.median(cpus):,.0f} µs CPU per mail "
          f"({args.mails} mails of 1 KB, 10 pairs, durable SQLite spool)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-level", default="warn",
                        help="as an operator would set logging.level "
                             "(info logs the per-mail trail)")
    args = parser.parse_args()
    from mailet_mta.config.model import LoggingConfig
    from mailet_mta.logging_setup import start_logging
    start_logging(LoggingConfig(level=args.log_level, file="/dev/null"))
    task.react(lambda _r: defer.ensureDeferred(main(args)))
