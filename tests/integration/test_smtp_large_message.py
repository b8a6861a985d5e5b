"""A 50 MB message through the DATA parser with bounded memory (own process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, resource, sys, tempfile, time, tracemalloc
sys.path.insert(0, sys.argv[1])
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from mailet_mta.smtp.server import SMTPServerFactory
from mailet_mta.storage.blobs import BlobWriter
from tests.support.smtp_backend import RecordingBackend, smtp_config

class SyncFinishWriter(BlobWriter):
    def finish(self):  # no reactor in this process: fsync inline
        return defer.succeed(self.finish_sync())

backend = RecordingBackend(tempfile.mkdtemp())
backend.new_blob_writer = lambda: SyncFinishWriter(backend.blobs)
factory = SMTPServerFactory(smtp_config(max_message_size=0), backend)
peer = IPv4Address("TCP", "203.0.113.5", 1)
proto = factory.buildProtocol(peer)
proto.callLater = lambda *a: type("C", (), {"cancel": lambda s: None,
                                           "reset": lambda s, t: None})()
transport = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "10.0.0.1", 25))
proto.makeConnection(transport)
proto.dataReceived(b"EHLO x\r\nMAIL FROM:<x@remote.net>\r\nRCPT TO:<alice@example.com>\r\n"
                   b"DATA\r\nSubject: fifty megabytes\r\n\r\n")
lines = b"y" * 76 + b"\r\n" + b"..stuffed line\r\n"
chunk = lines * (65536 // len(lines))
count = 50 * 1024 * 1024 // len(chunk)
tracemalloc.start()
start = time.perf_counter()
for _ in range(count):
    proto.dataReceived(chunk)
proto.dataReceived(b".\r\n")
elapsed = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1]
mail, ref = backend.accepted[0]
expected = count * len(chunk) - count * chunk.count(b"\r\n..")
# VmHWM belongs to this process image; ru_maxrss would include the forking parent.
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"peak": peak, "maxrss_kb": hwm,
                  "body": ref.size, "expected_min": expected, "seconds": elapsed,
                  "mb": count * len(chunk) / 1e6, "reply": transport.value().decode()[-60:],
                  "file": ref.data is None}))
"""


def test_fifty_megabyte_message_parses_with_bounded_memory():
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["mb"] > 50 and r["file"] and "250 2.0.0 Ok: queued" in r["reply"]
    assert 0 < r["body"] - r["expected_min"] < 400  # exact unstuffing + Received: header
    assert r["peak"] < 4 * 1024 * 1024, r  # Python heap stays near one read buffer
    assert r["maxrss_kb"] < 120 * 1024, r
