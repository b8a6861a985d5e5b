"""Records of refused mail: kept by the shipped pipeline, bounded, purged on demand.

With the embedded default configuration a mail for an unknown local user that got past
RCPT is kept in the ``address-error`` repository (never bounced to an outsider, whose
sender may be forged). The repository is bounded by ``repositories.retention``
(enforced every ``purgeInterval``) and ``mailet-mta repository purge`` deletes by age
or count.

The refused mail: an unauthenticated client (not in authorizedAddresses) writes to an
unknown local user of a listener with ``rejectUnknownLocalUsers: false``.
"""

from __future__ import annotations

import smtplib

from tests.support.server import ServerProcess, base_config, wait_for


def refusing_server(tmp_path, **retention) -> ServerProcess:
    config = base_config(tmp_path / "var")
    config["smtpservers"][0]["authorizedAddresses"] = []
    config["smtpservers"][0]["rejectUnknownLocalUsers"] = False
    # A notice to remote.test would go to a closed loopback port (none may be sent).
    config["dns"] = {"hosts": {"remote.test": ["127.0.0.1:9"]}}
    if retention:
        config["repositories"] = {"purgeInterval": "1s",
                                  "retention": {"address-error": retention}}
    return ServerProcess(tmp_path, config)


def send_refused(server, subject: str) -> str:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.ehlo("client.test")
        client.mail("outsider@remote.test")
        assert client.rcpt("nobody@example.com")[0] == 250
        code, text = client.data(f"Subject: {subject}\r\n\r\nhello\r\n".encode())
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[-1]


def stored_names(server, repository="address-error") -> list[str]:
    from mailet_mta.storage import repositories
    from mailet_mta.storage.db import Database, default_url

    db = Database(default_url(server.data_dir))
    try:
        with db.transaction() as conn:
            return [m.name for m in repositories.list_mails(conn, repository)]
    finally:
        db.engine.dispose()


def test_mail_for_an_unknown_user_is_kept_not_bounced_with_the_shipped_pipeline(
        tmp_path, capsys):
    server = refusing_server(tmp_path)
    with server:
        name = send_refused(server, "first")
        wait_for(lambda: stored_names(server) == [name], what="the address-error record")
        kept = wait_for(lambda: [line for line in server.log_text().splitlines()
                                 if f"id={name} " in line and "status=kept" in line],
                        what="the line of the kept mail")
        assert "relay=repository" in kept[0] and "(repository address-error)" in kept[0]
        from mailet_mta.cli import main

        assert main(["queue", "list", "--config", str(server.config_path)]) == 0
        assert "remote.test" not in capsys.readouterr().out      # no notice queued
        assert main(["repository", "list", "address-error",
                     "--config", str(server.config_path)]) == 0
        listing = capsys.readouterr().out
        assert "outsider@remote.test" in listing and "nobody@example.com" in listing


def test_retention_purges_past_the_bound_and_the_cli_purges_on_demand(tmp_path, capsys):
    server = refusing_server(tmp_path, maxMails=1, maxAge="30 days")
    with server:
        first = send_refused(server, "first")
        wait_for(lambda: stored_names(server) == [first], what="the first record")
        second = send_refused(server, "second")
        # Only the newest stays: the periodic purge (every second here) removed the first.
        wait_for(lambda: stored_names(server) == [second], what="the retention purge")
        server.wait_log("repository address-error: purged 1 mails")
    assert purge(server, capsys, "--older-than", "1d") == (
        0, "0 mail(s) purged from address-error")
    code, error = purge(server, capsys)
    assert code == 1 and "--older-than" in error and "--keep" in error
    assert purge(server, capsys, "--keep", "0") == (0, "1 mail(s) purged from address-error")
    assert stored_names(server) == []


def purge(server, capsys, *options) -> tuple[int, str]:
    """``mailet-mta repository purge address-error OPTIONS`` (in this process)."""
    from mailet_mta.cli import main

    code = main(["repository", "purge", "address-error", *options,
                 "--config", str(server.config_path)])
    out = capsys.readouterr()
    return code, (out.out or out.err).strip()
