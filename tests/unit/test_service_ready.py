"""MailServer.startService: a Deferred that fires once every listener listens."""

from __future__ import annotations

import json

import pytest_twisted
from twisted.internet import defer

from mailet_mta.config import load_config_text
from mailet_mta.service import MailServer

CONFIG = """
servernames: [example.com]
storage: {{data_dir: "{data_dir}"}}
smtpservers: [{{name: smtp, listen: "tcp:0:interface=127.0.0.1"}}]
pop3servers: [{{name: pop3, listen: "tcp:0:interface=127.0.0.1"}}]
spoolmanager:
  processors:
    root: [{{match: All, class: Null}}]
    error: [{{match: All, class: Null}}]
"""


@pytest_twisted.ensureDeferred
async def test_start_service_fires_with_every_bound_listener(tmp_path):
    server = MailServer(load_config_text(CONFIG.format(data_dir=tmp_path / "var"), "yaml"))
    try:
        ready = server.startService()
        assert isinstance(ready, defer.Deferred)
        info = await ready
        assert set(info) == {"smtp", "pop3"}
        assert all(entry["port"] > 0 for entry in info.values())
        written = json.loads((tmp_path / "var" / "listeners.json").read_text())
        assert written["listeners"] == info
        assert await server.when_ready() == info      # later callers get it at once
    finally:
        await server.stopService()


def test_imap_sessions_get_the_spool_managers_mime_limits(tmp_path):
    from mailet_mta.mail import MimeLimits

    text = CONFIG.format(data_dir=tmp_path / "var").replace(
        "spoolmanager:\n", "spoolmanager:\n  maxMimeParts: 7\n  maxMimeDepth: 3\n").replace(
        "pop3servers:", 'imapservers: [{name: imap, listen: "tcp:0:interface=127.0.0.1"}]\n'
        "pop3servers:")
    server = MailServer(load_config_text(text, "yaml"))
    (imap,) = [svc for name, kind, svc in server._build_listeners() if kind == "imap"]
    assert imap.factory.mime_limits == MimeLimits(max_parts=7, max_depth=3)
    assert imap.factory.buildProtocol(None).mime_limits == MimeLimits(7, 3)
