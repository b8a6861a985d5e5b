"""The server's log output never holds up mail: ``serve`` with its standard output a
pipe that nobody reads (a journal that stopped reading) keeps accepting and delivering,
and the lines it kept come out whole, in order, once the pipe is read again."""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import sys
import threading
import time

from tests.support.server import ServerProcess, _env, base_config


class StalledStdoutServer(ServerProcess):
    """A server whose standard output and error are a pipe the test reads only later."""

    def launch(self, data_dir=None):
        marker = self.data_dir / "listeners.json"
        if marker.exists():
            marker.unlink()
        self.read_end, write_end = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailet_mta", "serve", "--config", str(self.config_path)],
            stdout=write_end, stderr=write_end, cwd=self.workdir, env=_env())
        os.close(write_end)
        return self


def test_a_stalled_log_pipe_never_stops_mail(tmp_path):
    server = StalledStdoutServer(tmp_path, base_config(tmp_path / "var"))
    server.add_user("alice@example.com", "alice password 1")
    server.start()
    received = bytearray()
    try:
        # 600 mails write 1,200 info lines (~240 KB), far more than the pipe's 64 KiB:
        # a server writing its log on the reactor thread blocks in write() and the
        # client times out.
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20) as client:
            for n in range(600):
                client.sendmail("bob@example.org", ["alice@example.com"],
                                f"Subject: {n}\r\n\r\nbody {n}\r\n")
        deadline = time.monotonic() + 60
        delivered = 0
        while delivered < 600 and time.monotonic() < deadline:
            time.sleep(0.25)
            listing = server.admin("mailbox", "list", "alice@example.com")
            delivered = int(re.search(r": (\d+) messages", listing)[1])
        assert delivered == 600
        # A new session is served at once while the log is still stalled.
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as client:
            assert client.noop()[0] == 250

        def read_all():
            while chunk := os.read(server.read_end, 65536):
                received.extend(chunk)

        reader = threading.Thread(target=read_all, daemon=True)
        reader.start()
    finally:
        assert server.stop() == 0
    reader.join(30)
    os.close(server.read_end)
    lines = received.decode(errors="replace").splitlines()
    queued = [line for line in lines if "status=queued" in line]
    sent = [line for line in lines if "relay=local" in line and "status=sent" in line]
    # Nothing dropped at this size (4 MiB wait for the writer): every line, whole.
    assert len(queued) == 600 and len(sent) == 600
    for line in queued:
        assert re.fullmatch(r"\S+ \[mailet_mta\.mail#info\] id=\S+ listener=smtp "
                            r"client=\[127\.0\.0\.1\] .* status=queued", line), line
    assert not [line for line in lines if "log lines dropped" in line]
