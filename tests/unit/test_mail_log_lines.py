"""The per-mail log lines: what an administrator greps for, at the levels that show them.

Each test writes through the real output (make_observer on a log file in tmp_path) and
reads the file back.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from twisted.logger import Logger

from mailet_mta import logging_setup
from mailet_mta.address import MailAddress
from mailet_mta.config.model import LoggingConfig
from mailet_mta.mail import Mail, MessageSource
from mailet_mta.smtp.envelope import Envelope, Session

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"


@pytest.fixture
def log_file(tmp_path):
    """Start the output at a level (``start(level, format)``); the module's state is
    put back afterwards."""
    saved = {name: getattr(logging_setup, name) for name in
             ("output", "_predicate", "info_enabled", "warn_enabled", "trail")}
    path = tmp_path / "mail.log"
    observers = []

    def start(level="info", fmt="text"):
        observer = logging_setup.make_observer(LoggingConfig(level=level, file=str(path),
                                                             format=fmt))
        observers.append(observer)
        return observer

    yield path, start
    if logging_setup.output is not None:
        logging_setup.output.close()
        logging_setup.output.out.close()
    for name, value in saved.items():
        setattr(logging_setup, name, value)


def _mail(**extra) -> Mail:
    mail = Mail("m1", sender=MailAddress.parse("carol@example.org"),
                recipients=[MailAddress.parse("alice@example.com")],
                message=MessageSource(b"Subject: x\r\n\r\nhi\r\n"), **extra)
    mail.last_updated = time.time() - 1.5
    return mail


def _accept(auth_user=None) -> None:
    session = Session(remote_ip="192.0.2.7", local_ip="127.0.0.1", authorized_network=False,
                      helo="mx.example.org", auth_user=auth_user)
    envelope = Envelope(sender=MailAddress.parse("carol@example.org"), name="m1",
                        recipients=[MailAddress.parse("alice@example.com")])
    logging_setup.log_queued("smtp", session, envelope, 1234)


def _lines(path) -> list[str]:
    """The lines in the file once the writer thread wrote everything queued."""
    if logging_setup.output is not None:
        assert logging_setup.output.flush()
    return path.read_text().splitlines()


def test_accepted_line_carries_id_client_helo_from_size_and_status(log_file):
    path, start = log_file
    start("info")
    _accept(auth_user="carol@example.org")
    [line] = _lines(path)
    assert re.fullmatch(
        STAMP + r" \[mailet_mta\.mail#info\] id=m1 listener=smtp client=\[192\.0\.2\.7\] "
        r"helo=mx\.example\.org sasl_username=carol@example\.org from=<carol@example\.org> "
        r"size=1234 nrcpt=1 status=queued", line), line


def test_local_delivery_line_carries_from_to_relay_delay_and_status(log_file):
    path, start = log_file
    start("info")
    logging_setup.log_local_delivery("alice@example.com", _mail())
    [line] = _lines(path)
    match = re.search(r"id=m1 from=<carol@example\.org> to=<alice@example\.com> "
                      r"relay=local delay=(\d+\.\d\d) status=sent "
                      r"\(delivered to mailbox INBOX\)$", line)
    assert match, line
    assert 1.4 <= float(match.group(1)) < 60


def test_remote_delivery_lines_carry_relay_status_and_reply_at_their_levels(log_file):
    path, start = log_file
    start("info")
    logging_setup.log_delivery("m1", "carol@example.org", "bob@example.net",
                               "mx.example.net[192.0.2.9]:25", 2.5, "sent",
                               "250 2.0.0 Ok:\r\n queued")
    logging_setup.log_delivery("m2", None, "bob@example.net", "mx.example.net[192.0.2.9]:25",
                               0.25, "deferred", "451 4.3.0 try later")
    sent, deferred = _lines(path)
    assert sent.endswith("[mailet_mta.mail#info] id=m1 from=<carol@example.org> "
                         "to=<bob@example.net> relay=mx.example.net[192.0.2.9]:25 "
                         "delay=2.50 status=sent (250 2.0.0 Ok: queued)"), sent
    assert deferred.endswith("[mailet_mta.mail#warn] id=m2 from=<> to=<bob@example.net> "
                             "relay=mx.example.net[192.0.2.9]:25 delay=0.25 "
                             "status=deferred (451 4.3.0 try later)"), deferred


def test_kept_line_names_the_repository(log_file):
    path, start = log_file
    start("info")
    logging_setup.log_kept("relay-denied", _mail())
    [line] = _lines(path)
    assert re.search(r"id=m1 from=<carol@example\.org> to=<alice@example\.com> "
                     r"relay=repository delay=\d+\.\d\d status=kept "
                     r"\(repository relay-denied\)$", line), line


def _everything() -> None:
    mail = _mail()
    trail = logging_setup.TrailObserver()
    if trail.trail:
        trail.entered(mail, "transport")
        trail.mailet_changed("All/ToProcessor", mail)
        trail.ghosted(mail, "transport")
    _accept()
    logging_setup.log_local_delivery("alice@example.com", mail)
    logging_setup.log_delivery("m1", "carol@example.org", "bob@example.net", "mx[192.0.2.9]:25",
                               1.0, "deferred", "451 later")


@pytest.mark.parametrize("level, expected", [
    ("debug", ["spool#debug", "spool#debug", "spool#debug", "mail#info", "mail#info",
               "mail#warn"]),
    ("info", ["mail#info", "mail#info", "mail#warn"]),
    ("warn", ["mail#warn"]),
    ("error", []),
])
def test_the_level_filters_the_per_mail_lines(log_file, level, expected):
    path, start = log_file
    start(level)
    _everything()
    got = [re.search(r"\[mailet_mta\.(\w+#\w+)\]", line).group(1) for line in _lines(path)]
    assert got == expected


def test_debug_trail_names_the_processor_and_the_change(log_file):
    path, start = log_file
    start("debug")
    _everything()
    lines = _lines(path)
    assert lines[0].endswith("id=m1 processor=transport from=<carol@example.org> "
                             "to=alice@example.com")
    assert lines[1].endswith("id=m1 All/ToProcessor → state=root rcpts=1")
    assert lines[2].endswith("id=m1 ghosted in transport")


def test_a_reloaded_level_applies_to_the_next_line(log_file):
    path, start = log_file
    start("warn")
    _accept()
    assert _lines(path) == []
    logging_setup.reconfigure(LoggingConfig(level="info", file=str(path)))
    _accept()
    assert len(_lines(path)) == 1


def test_json_lines_carry_the_fields_as_plain_values(log_file):
    path, start = log_file
    start("info", "json")
    _accept()
    logging_setup.log_local_delivery("alice@example.com", _mail())
    queued, sent = (json.loads(line) for line in _lines(path))
    assert queued["message"].endswith("status=queued")
    assert queued["id"] == "m1" and queued["sender"] == "carol@example.org"
    assert queued["status"] == "queued" and queued["size"] == 1234
    assert queued["level"] == "info" and queued["namespace"] == "mailet_mta.mail"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", queued["time"])
    assert sent["relay"] == "local" and sent["status"] == "sent" and sent["delay"] >= 1.4
    assert sent["user"] == "alice@example.com"


def test_per_mail_lines_never_use_twisted_event_formatting(log_file, monkeypatch):
    path, start = log_file
    start("info")

    def refuse(*args, **kwargs):
        raise AssertionError("Twisted event formatting on the per-mail path")

    monkeypatch.setattr(logging_setup, "formatEvent", refuse)
    monkeypatch.setattr(logging_setup, "formatEventAsClassicLogText", refuse)
    _accept()
    logging_setup.log_local_delivery("alice@example.com", _mail())
    assert len(_lines(path)) == 2


def test_other_events_share_the_output_in_the_same_format(log_file):
    path, start = log_file
    observer = start("info")
    log = Logger(namespace="mailet_mta.service", observer=observer)
    log.info("listening on {port}", port=25)
    log.debug("not shown")
    _accept()
    first, second = _lines(path)
    assert re.fullmatch(STAMP + r" \[mailet_mta\.service#info\] listening on 25", first)
    assert re.match(STAMP + r" \[mailet_mta\.mail#info\] id=m1 ", second)


def test_other_events_as_json_keep_their_fields(log_file):
    path, start = log_file
    observer = start("info", "json")
    Logger(namespace="mailet_mta.service", observer=observer).warn(
        "disk {pct}% full", pct=91)
    [record] = (json.loads(line) for line in _lines(path))
    assert record["message"] == "disk 91% full" and record["pct"] == 91
    assert record["level"] == "warn" and record["namespace"] == "mailet_mta.service"


def test_a_client_chosen_helo_stays_one_token(log_file):
    path, start = log_file
    start("info")
    session = Session(remote_ip="192.0.2.7", local_ip="127.0.0.1", authorized_network=False,
                      helo="evil status=sent\x1b[2J")
    envelope = Envelope(sender=None, name="m1", recipients=[MailAddress.parse("a@example.com")])
    logging_setup.log_queued("smtp", session, envelope, 10)
    [line] = _lines(path)
    assert "helo=evil?status=sent?[2J from=<> " in line
