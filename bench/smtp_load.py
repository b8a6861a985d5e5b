"""The SMTP load generator: N connections, each sending its share of messages.

    python bench/smtp_load.py --port P --connections N --count M --size S

A small asyncio SMTP client (not smtplib: with 16 connections in one process
smtplib's own per-line CPU competes with the server on a 2-core machine). Each
connection says EHLO once, then runs MAIL, RCPT, DATA, the dot-stuffed message and
``.`` for every message of its share over the same connection, and QUIT. Latency is
from writing MAIL to reading the final reply to the message. Prints one JSON object:
``start``/``end`` (time.monotonic, comparable with the parent process on Linux),
``latencies`` (seconds), ``errors``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import make_message


class ReplyError(Exception):
    pass


async def reply(reader) -> bytes:
    """One (possibly multi-line) SMTP reply; the last line."""
    while True:
        line = await reader.readline()
        if not line:
            raise ReplyError("connection closed")
        if line[3:4] != b"-":
            return line


async def expect(reader, code: bytes) -> None:
    line = await reply(reader)
    if not line.startswith(code):
        raise ReplyError(line.decode("latin-1").strip())


async def session(host, port, count, wire, sender, rcpt, latencies, errors):
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    try:
        await expect(reader, b"220")
        writer.write(b"EHLO loadgen.example\r\n")
        await expect(reader, b"250")
        mail = f"MAIL FROM:<{sender}>\r\n".encode()
        rcpt_line = f"RCPT TO:<{rcpt}>\r\n".encode()
        for _ in range(count):
            t0 = time.perf_counter()
            try:
                writer.write(mail)
                await expect(reader, b"250")
                writer.write(rcpt_line)
                await expect(reader, b"250")
                writer.write(b"DATA\r\n")
                await expect(reader, b"354")
                writer.write(wire)
                await expect(reader, b"250")
            except ReplyError as exc:
                errors.append(str(exc))
                writer.write(b"RSET\r\n")
                await reply(reader)
                continue
            latencies.append(time.perf_counter() - t0)
        writer.write(b"QUIT\r\n")
        await reply(reader)
    finally:
        writer.close()


def dot_stuff(message: bytes) -> bytes:
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


async def run(args) -> dict:
    wire = dot_stuff(make_message(args.size, args.sender, args.rcpt))
    shares = [args.count // args.connections + (1 if i < args.count % args.connections else 0)
              for i in range(args.connections)]
    latencies, errors = [], []
    start = time.monotonic()
    await asyncio.gather(*(session(args.host, args.port, n, wire, args.sender, args.rcpt,
                                   latencies, errors) for n in shares if n))
    end = time.monotonic()
    return {"start": start, "end": end, "latencies": latencies, "errors": errors[:20],
            "error_count": len(errors), "wire_octets": len(wire)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--sender", default="sender@example.org")
    parser.add_argument("--rcpt", default="bench@example.com")
    result = asyncio.run(run(parser.parse_args()))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
