"""The standard matchers: each rule matched and not matched, and bad conditions refused."""

from __future__ import annotations

import pytest

from mailet_mta.api import (
    ATTR_AUTH_NETWORK,
    ATTR_AUTH_USER,
    ATTR_SENT_BY_MAILET,
    ConfigurationError,
    Mail,
    MailAddress,
)
from mailet_mta.testing import FakeMailContext, run
from mailets.matchers.all import All
from mailets.matchers.attachments import HasAttachment
from mailets.matchers.headers import HasHeader, SubjectIs, SubjectStartsWith
from mailets.matchers.local_recipients import HostIsLocal, RecipientIsLocal
from mailets.matchers.mail_attributes import HasMailAttribute
from mailets.matchers.network import RemoteAddrInNetwork, RemoteAddrNotInNetwork
from mailets.matchers.recipient_count import IsSingleRecipient, TooManyRecipients
from mailets.matchers.recipient_lists import HostIs, RecipientIs, RecipientIsRegex, UserIs
from mailets.matchers.relay_limit import RelayLimit
from mailets.matchers.sender import (
    SenderHostIs,
    SenderIs,
    SenderIsLocal,
    SenderIsNull,
    SenderIsRegex,
)
from mailets.matchers.size import SizeGreaterThan
from mailets.matchers.smtp_session import (
    SentByMailet,
    SMTPAuthSuccessful,
    SMTPAuthUserIs,
    SMTPIsAuthNetwork,
)

A = MailAddress.parse


@pytest.fixture
def ctx():
    return FakeMailContext(domains=["example.com", "example.net"],
                         users=["bob@example.com", "alice@example.net"])


def make_mail(recipients=("bob@example.com", "carol@example.com", "dave@remote.org"),
              sender="eve@remote.org", message=b"Subject: hi\r\n\r\nbody\r\n", **kw):
    return Mail(sender=A(sender) if sender else None,
                recipients=[A(r) for r in recipients], message=message, **kw)


def matched(matcher, mail):
    return [str(r) for r in run(matcher.match(mail))]


ALL3 = ["bob@example.com", "carol@example.com", "dave@remote.org"]


# -- recipient matchers --------------------------------------------------------------
def test_all_matches_every_recipient(ctx):
    assert matched(ctx.matcher(All), make_mail()) == ALL3


def test_recipient_is_local_matches_only_local_mailboxes(ctx):
    assert matched(ctx.matcher(RecipientIsLocal), make_mail()) == ["bob@example.com"]


def test_host_is_local_matches_recipients_of_local_domains(ctx):
    mail = make_mail(recipients=["bob@EXAMPLE.com", "x@example.net", "y@remote.org"])
    assert matched(ctx.matcher(HostIsLocal), mail) == ["bob@example.com", "x@example.net"]


def test_host_is_matches_listed_domains_case_insensitively(ctx):
    m = ctx.matcher(HostIs, "Remote.ORG, other.org")
    assert matched(m, make_mail()) == ["dave@remote.org"]


def test_user_is_matches_local_parts_exactly(ctx):
    m = ctx.matcher(UserIs, "bob,dave")
    assert matched(m, make_mail()) == ["bob@example.com", "dave@remote.org"]
    assert matched(m, make_mail(recipients=["Bob@example.com"])) == []


def test_recipient_is_matches_listed_addresses(ctx):
    m = ctx.matcher(RecipientIs, "carol@Example.com, nobody@example.com")
    assert matched(m, make_mail()) == ["carol@example.com"]


def test_recipient_is_refuses_an_invalid_address(ctx):
    with pytest.raises(ConfigurationError, match="not-an-address"):
        ctx.matcher(RecipientIs, "not-an-address")


def test_recipient_is_regex_must_match_the_whole_address(ctx):
    m = ctx.matcher(RecipientIsRegex, r"(bob|dave)@.*")
    assert matched(m, make_mail()) == ["bob@example.com", "dave@remote.org"]
    assert matched(ctx.matcher(RecipientIsRegex, "bob"), make_mail()) == []


def test_recipient_is_regex_refuses_an_invalid_expression(ctx):
    with pytest.raises(ConfigurationError, match="regular expression"):
        ctx.matcher(RecipientIsRegex, "(unclosed")


@pytest.mark.parametrize("cls", [HostIs, UserIs, RecipientIs, RecipientIsRegex, SenderIs,
                                 SenderIsRegex, SenderHostIs, RemoteAddrInNetwork,
                                 RemoteAddrNotInNetwork, SMTPAuthUserIs, RelayLimit,
                                 HasHeader, HasMailAttribute, SizeGreaterThan,
                                 SubjectStartsWith, SubjectIs, TooManyRecipients])
@pytest.mark.parametrize("condition", [None, "", "  "])
def test_matchers_needing_a_condition_refuse_a_missing_one(ctx, cls, condition):
    with pytest.raises(ConfigurationError, match="needs a condition"):
        ctx.matcher(cls, condition)


# -- sender matchers -----------------------------------------------------------------
def test_sender_is_matches_all_recipients_or_none(ctx):
    m = ctx.matcher(SenderIs, "eve@remote.org,x@y.org")
    assert matched(m, make_mail()) == ALL3
    assert matched(m, make_mail(sender="mallory@remote.org")) == []
    assert matched(m, make_mail(sender=None)) == []


def test_sender_is_regex(ctx):
    m = ctx.matcher(SenderIsRegex, r".*@remote\.org")
    assert matched(m, make_mail()) == ALL3
    assert matched(m, make_mail(sender="eve@remote.org.evil")) == []
    assert matched(m, make_mail(sender=None)) == []


def test_sender_is_null_matches_only_the_null_sender(ctx):
    m = ctx.matcher(SenderIsNull)
    assert matched(m, make_mail(sender=None)) == ALL3
    assert matched(m, make_mail()) == []


def test_sender_is_local_matches_a_local_mailbox_sender(ctx):
    m = ctx.matcher(SenderIsLocal)
    assert matched(m, make_mail(sender="alice@example.net")) == ALL3
    assert matched(m, make_mail(sender="nobody@example.net")) == []
    assert matched(m, make_mail(sender=None)) == []


def test_sender_host_is_matches_the_sender_domain(ctx):
    m = ctx.matcher(SenderHostIs, "REMOTE.org")
    assert matched(m, make_mail()) == ALL3
    assert matched(m, make_mail(sender="eve@sub.remote.org")) == []
    assert matched(m, make_mail(sender=None)) == []


def test_sender_host_is_refuses_an_invalid_domain(ctx):
    with pytest.raises(ConfigurationError, match="bad_domain"):
        ctx.matcher(SenderHostIs, "bad_domain!")


# -- network -------------------------------------------------------------------------
@pytest.mark.parametrize("condition,addr,inside", [
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.1", "127.0.0.2", False),
    ("127.0.0.1/8", "127.200.0.9", True),
    ("10.0.0.0/8", "11.0.0.1", False),
    ("127.0.0.0/255.0.0.0", "127.9.9.9", True),
    ("127.0.0.0/255.255.0.0", "127.9.9.9", False),
    ("192.168.0.*", "192.168.0.77", True),
    ("192.168.0.*", "192.168.1.77", False),
    ("10.*", "10.1.2.3", True),
    ("2001:db8::/32", "2001:db8:1::5", True),
    ("2001:db8::/32", "2001:db9::5", False),
    ("[::1]", "::1", True),
    ("127.0.0.1", "::ffff:127.0.0.1", True),
    ("localhost", "127.0.0.1", True),
    ("localhost", "::1", True),
    ("10.0.0.0/8, 192.168.0.0/16", "192.168.3.3", True),
    ("10.0.0.0/8", "not-an-ip", False),
])
def test_remote_addr_in_network(ctx, condition, addr, inside):
    mail = make_mail(remote_addr=addr)
    assert matched(ctx.matcher(RemoteAddrInNetwork, condition), mail) == (ALL3 if inside else [])
    assert matched(ctx.matcher(RemoteAddrNotInNetwork, condition), mail) == \
        ([] if inside else ALL3)


@pytest.mark.parametrize("condition,message", [
    ("mail.example.com", "host name"),
    ("192.168.*.1", "wildcard"),
    ("300.1.1.1", "not an IP address"),
    ("10.0.0.0/33", "not an IP address"),
])
def test_network_lists_refuse_invalid_entries(ctx, condition, message):
    with pytest.raises(ConfigurationError, match=message):
        ctx.matcher(RemoteAddrNotInNetwork, condition)


# -- SMTP session facts --------------------------------------------------------------
def test_smtp_auth_successful_uses_the_attribute_or_the_mail_field(ctx):
    m = ctx.matcher(SMTPAuthSuccessful)
    assert matched(m, make_mail(attributes={ATTR_AUTH_USER: "bob"})) == ALL3
    assert matched(m, make_mail(auth_user="bob")) == ALL3
    assert matched(m, make_mail()) == []


def test_smtp_auth_user_is_matches_listed_users(ctx):
    m = ctx.matcher(SMTPAuthUserIs, "bob@example.com, alice")
    assert matched(m, make_mail(auth_user="Bob@example.com")) == ALL3
    assert matched(m, make_mail(attributes={ATTR_AUTH_USER: "alice"})) == ALL3
    assert matched(m, make_mail(auth_user="mallory")) == []
    assert matched(m, make_mail()) == []


def test_smtp_is_auth_network_reads_the_session_attribute(ctx):
    m = ctx.matcher(SMTPIsAuthNetwork)
    assert matched(m, make_mail(attributes={ATTR_AUTH_NETWORK: True})) == ALL3
    assert matched(m, make_mail(attributes={ATTR_AUTH_NETWORK: False})) == []
    assert matched(m, make_mail()) == []


def test_sent_by_mailet_reads_the_mark(ctx):
    m = ctx.matcher(SentByMailet)
    assert matched(m, make_mail(attributes={ATTR_SENT_BY_MAILET: True})) == ALL3
    assert matched(m, make_mail()) == []


# -- headers and content -------------------------------------------------------------
def received(n):
    return b"".join(b"Received: from h%d by h%d; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (i, i)
                    for i in range(n)) + b"Subject: x\r\n\r\nbody\r\n"


def test_relay_limit_matches_at_n_received_headers(ctx):
    m = ctx.matcher(RelayLimit, "3")
    assert matched(m, make_mail(message=received(3))) == ALL3
    assert matched(m, make_mail(message=received(4))) == ALL3
    assert matched(m, make_mail(message=received(2))) == []


@pytest.mark.parametrize("condition", ["many", "0", "-1", "2.5"])
def test_relay_limit_refuses_a_bad_number(ctx, condition):
    with pytest.raises(ConfigurationError, match="RelayLimit"):
        ctx.matcher(RelayLimit, condition)


def test_relay_limit_does_not_parse_the_body():
    ctx = FakeMailContext()
    mail = make_mail(message=received(1))
    ctx.matcher(RelayLimit, "1").match(mail)
    assert mail._message is None


HEADERS = (b"Subject: =?utf-8?q?R=C3=A9sum=C3=A9?= of the day\r\nX-Spam-Flag: YES\r\n"
           b"X-Mailer: test\r\n\r\nbody\r\n")


@pytest.mark.parametrize("condition,expected", [
    ("X-Spam-Flag", True),
    ("x-spam-flag", True),
    ("X-Spam-Flag=yes", True),
    ("X-Spam-Flag=NO", False),
    ("X-Spam-Flag=YES+X-Mailer", True),
    ("X-Spam-Flag+X-Missing", False),
    ("X-Missing", False),
])
def test_has_header(ctx, condition, expected):
    assert matched(ctx.matcher(HasHeader, condition), make_mail(message=HEADERS)) == \
        (ALL3 if expected else [])


def test_has_header_refuses_a_bad_header_name(ctx):
    with pytest.raises(ConfigurationError, match="header name"):
        ctx.matcher(HasHeader, "X Bad")


def test_has_mail_attribute_matches_any_named_attribute_present(ctx):
    m = ctx.matcher(HasMailAttribute, "org.example.a, org.example.b")
    assert matched(m, make_mail(attributes={"org.example.b": False})) == ALL3
    assert matched(m, make_mail(attributes={"org.example.c": True})) == []


def test_subject_starts_with_decodes_encoded_words(ctx):
    assert matched(ctx.matcher(SubjectStartsWith, "Résumé"), make_mail(message=HEADERS)) == ALL3
    assert matched(ctx.matcher(SubjectStartsWith, "résumé"), make_mail(message=HEADERS)) == []


def test_subject_is_compares_the_whole_subject(ctx):
    assert matched(ctx.matcher(SubjectIs, "Résumé of the day"),
                   make_mail(message=HEADERS)) == ALL3
    assert matched(ctx.matcher(SubjectIs, "Résumé"), make_mail(message=HEADERS)) == []
    assert matched(ctx.matcher(SubjectIs, "x"), make_mail(message=b"\r\nno headers")) == []


MULTIPART_WITH_ATTACHMENT = (
    b"Subject: a\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
    b"filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--XX--\r\n")
MULTIPART_WITHOUT = MULTIPART_WITH_ATTACHMENT.replace(
    b"Content-Disposition: attachment; filename=a.pdf\r\n", b"")
MULTIPART_NAMED_ONLY = MULTIPART_WITH_ATTACHMENT.replace(
    b"Content-Disposition: attachment; filename=a.pdf",
    b"Content-Disposition: inline; filename=a.pdf")


@pytest.mark.parametrize("message,expected", [
    (MULTIPART_WITH_ATTACHMENT, True),
    (MULTIPART_NAMED_ONLY, True),
    (MULTIPART_WITHOUT, False),
    (b"Subject: x\r\n\r\nplain\r\n", False),
    (b"Content-Type: application/zip\r\nContent-Disposition: attachment; filename=z.zip"
     b"\r\n\r\nxx\r\n", True),
])
def test_has_attachment(ctx, message, expected):
    assert matched(ctx.matcher(HasAttachment), make_mail(message=message)) == \
        (ALL3 if expected else [])


def test_size_greater_than_uses_binary_units(ctx):
    m = ctx.matcher(SizeGreaterThan, "1k")
    assert matched(m, make_mail(message=b"x" * 1025)) == ALL3
    assert matched(m, make_mail(message=b"x" * 1024)) == []


def test_size_greater_than_refuses_a_bad_size(ctx):
    with pytest.raises(ConfigurationError, match="size"):
        ctx.matcher(SizeGreaterThan, "big")


# -- recipient counts ----------------------------------------------------------------
def test_is_single_recipient(ctx):
    m = ctx.matcher(IsSingleRecipient)
    assert matched(m, make_mail(recipients=["a@b.org"])) == ["a@b.org"]
    assert matched(m, make_mail()) == []


def test_too_many_recipients_matches_above_the_limit(ctx):
    assert matched(ctx.matcher(TooManyRecipients, "2"), make_mail()) == ALL3
    assert matched(ctx.matcher(TooManyRecipients, "3"), make_mail()) == []


@pytest.mark.parametrize("condition", ["lots", "0"])
def test_too_many_recipients_refuses_a_bad_number(ctx, condition):
    with pytest.raises(ConfigurationError, match="TooManyRecipients"):
        ctx.matcher(TooManyRecipients, condition)


NO_CONDITION = [All, HostIsLocal, RecipientIsLocal, SMTPAuthSuccessful, SMTPIsAuthNetwork,
                SentByMailet, IsSingleRecipient, HasAttachment, SenderIsNull, SenderIsLocal]


@pytest.mark.parametrize("cls", NO_CONDITION)
def test_matchers_taking_no_condition_refuse_one(ctx, cls):
    with pytest.raises(ConfigurationError, match="takes no condition"):
        ctx.matcher(cls, "foo")
    ctx.matcher(cls, None)


def test_every_standard_matcher_either_reads_its_condition_or_refuses_one():
    """A matcher that neither requires nor parses a condition must say it takes none
    (bases such as WholeMailMatcher, which other matchers extend, are left out)."""
    import importlib
    import pkgutil

    import mailets.matchers
    from mailet_mta.api import GenericMatcher

    classes = set()
    for info in pkgutil.iter_modules(mailets.matchers.__path__):
        module = importlib.import_module(f"mailets.matchers.{info.name}")
        classes |= {c for c in vars(module).values() if isinstance(c, type)
                    and issubclass(c, GenericMatcher) and c.__module__ == module.__name__}
    leaves = {c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)}
    unparsed = [c for c in leaves if not c.condition_required
                and c.init_matcher is GenericMatcher.init_matcher]
    assert {c.__name__ for c in unparsed} >= {"All", "HostIsLocal", "SenderIsNull"}
    for cls in unparsed:
        assert cls.takes_condition is False, f"{cls.__name__} ignores a condition silently"
