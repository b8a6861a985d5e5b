"""A mail leased by a process that was SIGKILLed is taken up promptly after the restart.

The first server runs a pipeline that stalls every mail (so each one is leased by a
running process when the kill comes); the restarted server runs the normal pipeline
and must deliver the mail within 15 s — not after the lease of the dead process ran
out.
"""

from __future__ import annotations

import copy
import smtplib

import yaml

from tests.soak.harness import PASSWORD, local_only_processors, mailbox_ids, soak_message
from tests.support.server import ServerProcess, base_config, wait_for


def _recover(tmp_path, db_url=None):
    processors = local_only_processors()
    stalled = copy.deepcopy(processors)
    stalled["root"]["mailets"].insert(0, {"match": "All",
                                          "class": "tests.soak.stall_mailet.Stall"})
    config = base_config(tmp_path / "var", processors=stalled)
    if db_url:
        config["storage"]["url"] = db_url
    srv = ServerProcess(tmp_path, config)
    srv.add_user("user0@example.com", PASSWORD)
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
            s.sendmail("sender@client.example", ["user0@example.com"],
                       soak_message(1, "user0@example.com"))
        srv.kill()
        config["spoolmanager"] = {"processors": processors}
        srv.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        srv.start()
        wait_for(lambda: mailbox_ids(srv.port("pop3"), "user0@example.com") == [1],
                 timeout=15, what="the mail leased by the killed process delivered")
    finally:
        srv.stop()


def test_mail_leased_by_a_killed_process_is_delivered_after_restart_on_sqlite(tmp_path):
    _recover(tmp_path)


def test_mail_leased_by_a_killed_process_is_delivered_after_restart_on_postgresql(
        tmp_path, pg_url):
    _recover(tmp_path, pg_url)
