"""Long crash-safety soak: clients send numbered mails while the server is SIGKILLed.

Usage: python bench/soak.py [--kills 30] [--mails 20000] [--seconds 300] [--clients 16]
                            [--postgresql URL] [--remote] [--settle 420] [--json FILE]

Runs tests/soak/harness.py's ``run_soak`` once per backend asked for (SQLite always;
PostgreSQL with --postgresql, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test,
in a fresh schema that is dropped afterwards) and prints mails sent, accepted (250),
kills, delivered, lost and duplicated. Exit status 1 when any mail was lost or
delivered twice. --remote adds a second mailet-mta as the remote peer (needs
RemoteDelivery).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_schema
from tests.soak.harness import remote_delivery_available, run_soak


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=30)
    p.add_argument("--mails", type=int, default=20000)
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--postgresql", metavar="URL", help="also run on this PostgreSQL")
    p.add_argument("--remote", action="store_true", help="half the mails to a remote peer")
    p.add_argument("--settle", type=float, default=420.0,
                   help="seconds to wait for delivery after the last kill (above the "
                        "300 s spool lease, so PostgreSQL rows of killed processes count)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = p.parse_args(argv)
    if args.remote and not remote_delivery_available():
        p.error("--remote needs the RemoteDelivery mailet (mailet_mta/delivery/)")
    runs = [None] + ([args.postgresql] if args.postgresql else [])
    results = []
    for base in runs:
        drops = []
        url = peer_url = None
        if base:
            url, drop = fresh_schema(base)
            peer_url, drop_peer = fresh_schema(base)
            drops += [drop, drop_peer]
        try:
            with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
                r = run_soak(Path(tmp), db_url=url, peer_db_url=peer_url,
                             clients=args.clients, kills=args.kills, max_mails=args.mails,
                             duration=args.seconds, remote=args.remote,
                             settle_timeout=args.settle,
                             kill_interval=(0.5, 2 * args.seconds / (args.kills + 1)))
        finally:
            for drop in drops:
                drop()
        print(r.summary(), flush=True)
        results.append(r)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 1 if any(r.lost or r.duplicated or r.pending for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
