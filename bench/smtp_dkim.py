"""SMTP acceptance with DKIMSign on, against the same pipeline without it.

    python bench/smtp_dkim.py [--count 1000] [--repeats 3] [--sizes 1024,102400]
                              [--connections 16] [--algorithms ed25519,rsa]

Two (or three) mailet-mta servers, each its own process on 127.0.0.1 with a fresh data
directory and bench/smtp.py's pipeline (root → transport → local-delivery): ``plain``
as it is, and ``dkim-<algorithm>`` with a ``DKIMSign`` for the sender's domain
(example.org) first in ``local-delivery``, so every mail is signed before it is
stored. The cells run interleaved (plain, dkim, plain, …) on the same machine, and
the table gives per server the median over ``--repeats`` of: mails/s until the client
had its last 250 (acceptance), mails/s until the last mail was in its mailbox (end to
end), and server CPU µs per mail; and the ratio of each to ``plain`` of the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# Run as a script: put the checkout on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, median
from bench.smtp import MailetTarget, run_cell
from mailets.dkim_keys import generate_key

SIGNING_DOMAIN = "example.org"        # bench/smtp_load.py's sender domain


class SigningTarget(MailetTarget):
    """mailet-mta with DKIMSign in front of LocalDelivery."""

    def __init__(self, workdir: Path, algorithm: str):
        workdir.mkdir(parents=True, exist_ok=True)
        key_path = workdir / f"{SIGNING_DOMAIN}.key"
        key_path.write_bytes(generate_key(algorithm).private)
        super().__init__(workdir)
        self.name = f"dkim-{algorithm}"
        config_path = self.server.config_path
        import yaml
        config = yaml.safe_load(config_path.read_text())
        local = config["spoolmanager"]["processors"]["local-delivery"]["mailets"]
        local.insert(0, {"match": "All", "class": "DKIMSign",
                         "parameters": {"keys": f"{SIGNING_DOMAIN}:bench:{key_path}"}})
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="1024,102400")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--algorithms", default="ed25519,rsa")
    args = parser.parse_args()
    count = max(1, min(args.count, 100_000))
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-smtp-dkim-"))
    targets = [MailetTarget(work / "plain")]
    targets[0].name = "plain"
    targets += [SigningTarget(work / f"dkim-{a}", a) for a in args.algorithms.split(",")]
    for target in targets:
        target.start()
    results: dict[tuple[str, int], list[dict]] = {}
    try:
        for rep in range(max(1, args.repeats)):
            for size in sizes:
                for target in targets:
                    cell = run_cell(target, size, args.connections, count)
                    results.setdefault((target.name, size), []).append(cell)
                    print(f"  repeat {rep + 1} {target.name:14} {size // 1024:>4} KB "
                          f"accept {cell['accept_rate']:7.0f}/s  delivered "
                          f"{cell['rate']:7.0f}/s  cpu {cell['cpu_us']:7.0f} us", flush=True)
    finally:
        for target in targets:
            target.stop()
    print(f"\n{machine()}\n")
    print("| pipeline | size | accepted mails/s | delivered mails/s | CPU µs/mail | "
          "accepted vs plain | delivered vs plain |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        base = {k: median([c[k] for c in results[("plain", size)]])
                for k in ("accept_rate", "rate")}
        for target in targets:
            cells = results[(target.name, size)]
            accept, rate = (median([c[k] for c in cells]) for k in ("accept_rate", "rate"))
            cpu = median([c["cpu_us"] for c in cells])
            print(f"| {target.name} | {size // 1024} KB | {accept:,.0f} | {rate:,.0f} | "
                  f"{cpu:,.0f} | {accept / base['accept_rate']:.2f}× | "
                  f"{rate / base['rate']:.2f}× |")


if __name__ == "__main__":
    main()
