"""SMTP-to-mailbox throughput: SQLite vs PostgreSQL on one node, and one vs two nodes.

Usage: python bench/scale.py [--mails 2000] [--connections 16] [--pg URL] [--repeats 1]

Each cell starts fresh server processes (the real CLI), sends ``--mails`` 1 KB mails
over ``--connections`` smtplib connections spread over the nodes, and stops the clock
when every mail is a row in ``messages`` (stored in a mailbox, durable). Needs a
PostgreSQL server for the PostgreSQL cells (default: the one tests use).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from tests.support.server import ServerProcess, base_config, wait_for

BODY = "x" * 1000


def make_nodes(root: Path, n: int, url: str | None):
    nodes = []
    for i in range(n):
        cfg = base_config(root / f"n{i}" / "var")
        cfg["storage"] = {"data_dir": str(root / f"n{i}" / "var"),
                          "blob_dir": str(root / "blobs")}
        if url:
            cfg["storage"]["url"] = url
        cfg["logging"] = {"level": "warn"}
        nodes.append(ServerProcess(root / f"n{i}", cfg, name=f"n{i}"))
    return nodes


def count_messages(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM messages")).scalar()
    finally:
        engine.dispose()


def run_cell(n_nodes: int, pg_base: str | None, mails: int, connections: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="mailet-scale-"))
    url = None
    schema = None
    if pg_base:
        schema = "bench_" + uuid.uuid4().hex[:10]
        admin = sa.create_engine(pg_base)
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
        url = f"{pg_base}?options=-csearch_path%3D{schema}"
    nodes = make_nodes(root, n_nodes, url)
    nodes[0].add_user("alice@example.com", "bench-password")
    for node in nodes:
        node.start()
    db_url = url or "sqlite:///" + str(root / "n0" / "var" / "mailet-mta.sqlite3")
    per_conn = mails // connections
    errors = []

    def sender(port):
        import smtplib
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
                for _ in range(per_conn):
                    s.sendmail("b@example.org", ["alice@example.com"],
                               f"Subject: bench\r\n\r\n{BODY}\r\n".encode())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    start = time.perf_counter()
    threads = [threading.Thread(target=sender, args=(nodes[i % n_nodes].port("smtp"),))
               for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    total = per_conn * connections
    wait_for(lambda: count_messages(db_url) >= total, timeout=600, interval=0.2,
             what="all mails stored")
    elapsed = time.perf_counter() - start
    for node in nodes:
        node.stop()
    if errors:
        raise RuntimeError(f"senders failed: {errors[:3]}")
    if schema:
        admin = sa.create_engine(pg_base)
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    shutil.rmtree(root, ignore_errors=True)
    return total / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    cells = [("SQLite, 1 node", 1, None), ("PostgreSQL, 1 node", 1, args.pg),
             ("PostgreSQL, 2 nodes", 2, args.pg)]
    results = {}
    for label, n, pg in cells:
        rates = [run_cell(n, pg, args.mails, args.connections) for _ in range(args.repeats)]
        results[label] = statistics.median(rates)
        print(f"{label:22} {results[label]:8.0f} mails/s  (runs: "
              f"{', '.join(f'{r:.0f}' for r in rates)})", flush=True)
    base = results["PostgreSQL, 1 node"]
    print(f"two nodes / one node on PostgreSQL: {results['PostgreSQL, 2 nodes'] / base:.2f}x; "
          f"PostgreSQL / SQLite on one node: {base / results['SQLite, 1 node']:.2f}x")


if __name__ == "__main__":
    main()
