"""LocalDelivery against a small in-test mailet context."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.logger import Logger

from mailet_mta.api import MailAddress, MailetConfig, MessagingError, TemporaryError
from mailet_mta.mail import Mail
from mailets.mailets.local_delivery import LocalDelivery


class Context:
    log = Logger()

    def __init__(self, users, aliases=None, full=(), temporary=False):
        self.users = set(users)
        self.aliases = aliases or {}
        self.full = set(full)
        self.temporary = temporary
        self.stored = []
        self.sent = []

    def local_users_of(self, address):
        key = str(address).lower()
        if key in self.aliases:
            return self.aliases[key]
        return [key] if key in self.users else []

    def store_in_mailbox(self, user, mail, folder="INBOX", prefix_headers=()):
        if self.temporary:
            return defer.fail(TemporaryError("database unavailable"))
        if user in self.full:
            from mailet_mta.storage.mailboxes import QuotaExceeded

            raise QuotaExceeded(user, 10, 10, 5)
        self.stored.append((user, folder, list(prefix_headers), mail.name))
        return defer.succeed(None)

    def send_mail(self, mail, state="root", delay=0):
        self.sent.append((mail, state))
        return defer.succeed(None)


def _mailet(context, **params):
    m = LocalDelivery()
    m.init(MailetConfig("LocalDelivery", context, params, processor="transport"))
    return m


def _mail(*rcpts, sender="alice@remote.example"):
    return Mail(sender=MailAddress.parse(sender) if sender else None,
                recipients=[MailAddress.parse(r) for r in rcpts],
                message=b"Subject: hi\r\n\r\nbody\r\n", state="transport")


def _run(mailet, mail):
    result = []
    defer.ensureDeferred(mailet.service(mail)).addBoth(result.append)
    assert result, "service did not finish"
    if isinstance(result[0], Exception) or hasattr(result[0], "raiseException"):
        result[0].raiseException()


def test_each_local_recipient_is_stored_with_trace_headers_then_ghosted():
    ctx = Context({"bob@example.com", "amy@example.com"})
    mail = _mail("bob@example.com", "Amy@example.com")
    _run(_mailet(ctx), mail)
    assert ctx.stored == [
        ("bob@example.com", "INBOX", [("Return-Path", "<alice@remote.example>"),
                                      ("Delivered-To", "bob@example.com")], mail.name),
        ("amy@example.com", "INBOX", [("Return-Path", "<alice@remote.example>"),
                                      ("Delivered-To", "Amy@example.com")], mail.name)]
    assert mail.state == "ghost"
    assert ctx.sent == []


def test_null_sender_gives_empty_return_path():
    ctx = Context({"bob@example.com"})
    _run(_mailet(ctx), _mail("bob@example.com", sender=None))
    assert ctx.stored[0][2][0] == ("Return-Path", "<>")


def test_unknown_recipient_goes_to_the_error_processor_with_550_5_1_1():
    ctx = Context({"bob@example.com"})
    mail = _mail("bob@example.com", "nobody@example.com")
    _run(_mailet(ctx), mail)
    assert [s[0] for s in ctx.stored] == ["bob@example.com"]
    [(copy, state)] = ctx.sent
    assert state == "error"
    assert copy.recipients == [MailAddress.parse("nobody@example.com")]
    assert copy.error_message == "550 5.1.1 <nobody@example.com>: mailbox unknown"
    assert copy.name != mail.name
    assert mail.state == "ghost"


def test_error_processor_parameter_is_used_and_required():
    ctx = Context(set())
    mailet = _mailet(ctx, errorProcessor="bounces")
    assert mailet.required_processors() == ["bounces"]
    _run(mailet, _mail("x@example.com"))
    assert ctx.sent[0][1] == "bounces"


def test_alias_to_several_users_delivers_once_per_user():
    ctx = Context({"bob@example.com", "amy@example.com"},
                  aliases={"team@example.com": ["bob@example.com", "amy@example.com"]})
    _run(_mailet(ctx), _mail("team@example.com", "bob@example.com"))
    assert [(s[0], s[2][1][1]) for s in ctx.stored] == [
        ("bob@example.com", "team@example.com"), ("amy@example.com", "team@example.com")]


def test_full_mailbox_goes_to_the_error_processor_with_552():
    ctx = Context({"bob@example.com", "amy@example.com"}, full={"amy@example.com"})
    _run(_mailet(ctx), _mail("bob@example.com", "amy@example.com"))
    [(copy, _state)] = ctx.sent
    assert copy.error_message.startswith("552 5.2.2 <amy@example.com>: mailbox full")
    assert [s[0] for s in ctx.stored] == ["bob@example.com"]


def test_temporary_storage_failure_propagates_for_a_retry():
    ctx = Context({"bob@example.com"}, temporary=True)
    mail = _mail("bob@example.com")
    with pytest.raises(TemporaryError):
        _run(_mailet(ctx), mail)
    assert mail.state == "transport"


def test_unknown_parameter_is_refused():
    from mailet_mta.api import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown parameter"):
        _mailet(Context(set()), errorprocessor="x")


def test_quota_exceeded_is_a_permanent_messaging_error():
    from mailet_mta.storage.mailboxes import QuotaExceeded

    assert issubclass(QuotaExceeded, MessagingError)
    assert not issubclass(QuotaExceeded, TemporaryError)


def test_a_folder_that_is_no_folder_name_is_refused_at_init():
    from mailet_mta.api import ConfigurationError

    for bad in ("a//b", "/a", "tab\there", "x" * 256):
        with pytest.raises(ConfigurationError, match="folder"):
            _mailet(Context(set()), folder=bad)
    assert _mailet(Context(set()), folder="Lists/python").folder == "Lists/python"
