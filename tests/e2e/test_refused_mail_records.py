"""Records of refused mail: kept by the shipped pipeline, bounded, purged on demand.

With the embedded default configuration a mail the pipeline refuses to relay is
bounced and then kept in the ``relay-denied`` repository (Bounce passes it on, as in
James). The repository is bounded by ``repositories.retention`` (enforced every
``purgeInterval``) and ``mailet-mta repository purge`` deletes by age or count.

The refused mail: an unauthenticated client (not in authorizedAddresses) writes to a
local address whose mapping points to another domain.
"""

from __future__ import annotations

import smtplib

from tests.support.server import ServerProcess, base_config, wait_for


def refusing_server(tmp_path, **retention) -> ServerProcess:
    config = base_config(tmp_path / "var")
    config["smtpservers"][0]["authorizedAddresses"] = []
    # The bounce notices go to far.test and remote.test: a closed loopback port.
    config["dns"] = {"hosts": {"remote.test": ["127.0.0.1:9"], "far.test": ["127.0.0.1:9"]}}
    if retention:
        config["repositories"] = {"purgeInterval": "1s",
                                  "retention": {"relay-denied": retention}}
    server = ServerProcess(tmp_path, config)
    _map(server, "alice@example.com", "bob@far.test")     # alice: local by her mapping
    return server


def _map(server, source, target) -> None:
    from mailet_mta.storage import mappings
    from mailet_mta.storage.db import Database, default_url

    server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(default_url(server.data_dir))
    try:
        db.upgrade()
        with db.transaction() as conn:
            mappings.add_mapping(conn, source, target)
    finally:
        db.engine.dispose()


def send_refused(server, subject: str) -> str:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.ehlo("client.test")
        client.mail("outsider@remote.test")
        assert client.rcpt("alice@example.com")[0] == 250
        code, text = client.data(f"Subject: {subject}\r\n\r\nhello\r\n".encode())
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[-1]


def stored_names(server, repository="relay-denied") -> list[str]:
    from mailet_mta.storage import repositories
    from mailet_mta.storage.db import Database, default_url

    db = Database(default_url(server.data_dir))
    try:
        with db.transaction() as conn:
            return [m.name for m in repositories.list_mails(conn, repository)]
    finally:
        db.engine.dispose()


def test_relay_denied_mail_is_bounced_and_kept_with_the_shipped_pipeline(tmp_path, capsys):
    server = refusing_server(tmp_path)
    with server:
        name = send_refused(server, "first")
        wait_for(lambda: stored_names(server) == [name], what="the relay-denied record")
        assert "processor=relay-denied" in server.log_text()
        from mailet_mta.cli import main

        assert main(["repository", "list", "relay-denied",
                     "--config", str(server.config_path)]) == 0
        listing = capsys.readouterr().out
        assert "outsider@remote.test" in listing and "bob@far.test" in listing


def test_retention_purges_past_the_bound_and_the_cli_purges_on_demand(tmp_path, capsys):
    server = refusing_server(tmp_path, maxMails=1, maxAge="30 days")
    with server:
        first = send_refused(server, "first")
        wait_for(lambda: stored_names(server) == [first], what="the first record")
        second = send_refused(server, "second")
        # Only the newest stays: the periodic purge (every second here) removed the first.
        wait_for(lambda: stored_names(server) == [second], what="the retention purge")
        assert "repository relay-denied: purged 1 mails" in server.log_text()
    assert purge(server, capsys, "--older-than", "1d") == (
        0, "0 mail(s) purged from relay-denied")
    code, error = purge(server, capsys)
    assert code == 1 and "--older-than" in error and "--keep" in error
    assert purge(server, capsys, "--keep", "0") == (0, "1 mail(s) purged from relay-denied")
    assert stored_names(server) == []


def purge(server, capsys, *options) -> tuple[int, str]:
    """``mailet-mta repository purge relay-denied OPTIONS`` (in this process)."""
    from mailet_mta.cli import main

    code = main(["repository", "purge", "relay-denied", *options,
                 "--config", str(server.config_path)])
    out = capsys.readouterr()
    return code, (out.out or out.err).strip()
