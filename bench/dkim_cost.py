"""DKIM signing and verifying cost per mail, in process (dkimpy, as the mailets use it).

    python bench/dkim_cost.py [--count 200] [--sizes 1024,102400]

For each algorithm (ed25519-sha256, rsa-sha256 with a 2048-bit key) and each message
size, signs ``--count`` messages and verifies them (the key record answered from
memory: no DNS), and prints the median µs per mail. The messages are plain text with
the header set DKIMSign signs by default, relaxed/relaxed canonicalisation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# Run as a script: put the checkout on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dkim

from mailets.dkim_keys import generate_key
from mailets.mailets.dkim_sign import DEFAULT_HEADERS

LINE = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"


def make_message(size: int) -> bytes:
    head = (b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: bench\r\n"
            b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@a.test>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n")
    body = LINE * max(1, (size - len(head)) // len(LINE))
    return head + body


def timed(fn, count: int) -> float:
    """Median µs of ``count`` calls of ``fn``."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def measure(algorithm: str, size: int, count: int) -> tuple[float, float]:
    key = generate_key(algorithm)
    record = key.public_record().encode()
    message = make_message(size)
    headers = [h.encode() for h in DEFAULT_HEADERS]

    def sign():
        return dkim.sign(message, b"sel", b"a.test", key.private,
                         canonicalize=(b"relaxed", b"relaxed"),
                         signature_algorithm=key.signature_algorithm,
                         include_headers=headers)

    signed = sign() + message
    assert dkim.verify(signed, dnsfunc=lambda *_a, **_k: record)
    return timed(sign, count), timed(
        lambda: dkim.DKIM(signed).verify(dnsfunc=lambda *_a, **_k: record), count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--sizes", default="1024,102400")
    args = parser.parse_args()
    count = max(1, min(args.count, 100_000))
    print("| algorithm | size | sign µs/mail | verify µs/mail |")
    print("| --- | --- | --- | --- |")
    for algorithm in ("ed25519", "rsa"):
        for size in (int(s) for s in args.sizes.split(",")):
            sign_us, verify_us = measure(algorithm, size, count)
            name = "ed25519-sha256" if algorithm == "ed25519" else "rsa-sha256 (2048)"
            print(f"| {name} | {size // 1024} KB | {sign_us:,.0f} | {verify_us:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
