"""POP3 session rules, driven through StringTransport (no sockets)."""

from __future__ import annotations

import base64

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from mailet_mta.config.model import POP3ServerConfig
from mailet_mta.pop3.factory import POP3ServerFactory
from tests.unit.pop3_memory_backend import MemoryBackend
from tests.unit.test_backpressure import BoundedTransport, SendingTransport


class TLSStringTransport(StringTransport):
    def __init__(self):
        super().__init__(peerAddress=None)
        self.tls_started = None

    def startTLS(self, ctx):
        self.tls_started = ctx


class Session:
    def __init__(self, backend=None, config=None, tls_context=None):
        self.clock = task.Clock()
        self.backend = backend or MemoryBackend()
        self.config = config or POP3ServerConfig(connection_timeout=60)
        self.factory = POP3ServerFactory(self.config, self.backend, tls_context, self.clock)
        self.proto = self.factory.buildProtocol(None)
        self.transport = TLSStringTransport()
        self.proto.makeConnection(self.transport)
        self.greeting = self.take()

    def take(self) -> bytes:
        self.drive()
        out = self.transport.value()
        self.transport.clear()
        return out

    def drive(self):
        self.clock.advance(0)   # the turns after COMMANDS_PER_TURN pipelined commands

    def send(self, data: bytes) -> bytes:
        self.proto.dataReceived(data)
        return self.take()

    def cmd(self, line: str) -> bytes:
        return self.send(line.encode() + b"\r\n")

    def login(self, user="bob@example.com", password="secret") -> bytes:
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        return self.cmd(f"PASS {password}")


def _box(*bodies, prefix=b""):
    backend = MemoryBackend()
    for body in bodies:
        backend.add("bob@example.com", body, prefix)
    return backend


BODY1 = b"Subject: one\r\n\r\nhello\r\n"
BODY2 = b"Subject: two\r\n\r\nworld, longer\r\n"


def test_greeting_is_ok():
    assert Session().greeting.startswith(b"+OK ")


def test_user_pass_login_reports_the_maildrop():
    s = Session(_box(BODY1, BODY2))
    assert s.login() == b"+OK bob@example.com has 2 messages (%d octets)\r\n" % (
        len(BODY1) + len(BODY2))


def test_wrong_password_is_auth_error_and_session_continues():
    s = Session()
    assert s.login(password="nope").startswith(b"-ERR [AUTH] ")
    assert s.login().startswith(b"+OK")


def test_third_failed_login_closes_the_connection():
    s = Session()
    for _ in range(3):
        reply = s.login(password="nope")
    assert reply.startswith(b"-ERR [AUTH]")
    assert s.transport.disconnecting


def test_throttled_address_gets_sys_temp():
    backend = MemoryBackend()
    backend.throttled.add("192.168.1.1")
    s = Session(backend)
    assert s.login().startswith(b"-ERR [SYS/TEMP] ")


def test_wrong_password_that_reaches_the_limit_is_auth_not_sys_temp_and_closes():
    backend = MemoryBackend()
    backend.throttle_on_failure.add("192.168.1.1")
    s = Session(backend)
    assert s.login(password="nope").startswith(b"-ERR [AUTH] ")
    assert s.transport.disconnecting


def test_pass_without_user_is_refused():
    assert Session().cmd("PASS secret").startswith(b"-ERR")


def test_password_may_contain_spaces():
    backend = MemoryBackend(users={"bob@example.com": " two words "})
    s = Session(backend)
    assert s.login(password=" two words ").startswith(b"+OK")


def test_transaction_commands_are_refused_before_login():
    s = Session(_box(BODY1))
    for command in ("STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 0", "RSET", "LAST",
                    "NOOP"):
        assert s.cmd(command).startswith(b"-ERR"), command
    assert s.login().startswith(b"+OK")


def test_unknown_command_gets_err_and_session_goes_on():
    s = Session(_box(BODY1))
    assert s.cmd("XYZZY").startswith(b"-ERR unknown command")
    s.login()
    assert s.cmd("FROB 1").startswith(b"-ERR")
    assert s.cmd("STAT").startswith(b"+OK 1 ")


def test_relogin_mid_session_is_refused():
    """Twisted allowed USER/PASS again in TRANSACTION (twisted-mail.md §3)."""
    s = Session(_box(BODY1))
    s.login()
    assert s.cmd("USER other@example.com").startswith(b"-ERR")
    assert s.cmd("PASS x").startswith(b"-ERR")
    assert s.cmd("AUTH PLAIN AGJvYgBzZWNyZXQ=").startswith(b"-ERR")
    assert s.cmd("STAT").startswith(b"+OK 1 ")


def test_stat_list_uidl_answer_from_the_index():
    s = Session(_box(BODY1, BODY2))
    s.login()
    assert s.cmd("STAT") == b"+OK 2 %d\r\n" % (len(BODY1) + len(BODY2))
    assert s.cmd("LIST") == b"+OK 2 messages (%d octets)\r\n1 %d\r\n2 %d\r\n.\r\n" % (
        len(BODY1) + len(BODY2), len(BODY1), len(BODY2))
    assert s.cmd("LIST 2") == b"+OK 2 %d\r\n" % len(BODY2)
    assert s.cmd("UIDL") == b"+OK unique-id listing follows\r\n1 uid-1\r\n2 uid-2\r\n.\r\n"
    assert s.cmd("UIDL 1") == b"+OK 1 uid-1\r\n"


def test_retr_sends_octet_count_equal_to_list_size():
    s = Session(_box(BODY1, prefix=b"Delivered-To: bob@example.com\r\n"))
    s.login()
    size = int(s.cmd("LIST 1").split()[2])
    reply = s.cmd("RETR 1")
    head, _, rest = reply.partition(b"\r\n")
    assert head == b"+OK %d octets" % size
    assert rest == b"Delivered-To: bob@example.com\r\n" + BODY1 + b".\r\n"
    assert len(rest) - len(b".\r\n") == size


def test_dele_hides_the_message_until_quit_and_deletes_at_quit():
    backend = _box(BODY1, BODY2)
    s = Session(backend)
    s.login()
    assert s.cmd("DELE 1") == b"+OK message 1 deleted\r\n"
    assert s.cmd("STAT") == b"+OK 1 %d\r\n" % len(BODY2)
    assert s.cmd("LIST") == b"+OK 1 messages (%d octets)\r\n2 %d\r\n.\r\n" % (
        len(BODY2), len(BODY2))
    assert s.cmd("UIDL") == b"+OK unique-id listing follows\r\n2 uid-2\r\n.\r\n"
    assert s.cmd("RETR 1").startswith(b"-ERR no such message")
    assert s.cmd("DELE 1").startswith(b"-ERR")
    assert s.cmd("LIST 1").startswith(b"-ERR")
    assert backend.deleted == []
    assert s.cmd("QUIT") == b"+OK bye (1 messages deleted)\r\n"
    assert backend.deleted == [1]
    assert s.transport.disconnecting
    assert backend.locks == {}


def test_rset_restores_deleted_messages():
    backend = _box(BODY1, BODY2)
    s = Session(backend)
    s.login()
    s.cmd("DELE 1")
    s.cmd("DELE 2")
    assert s.cmd("RSET").startswith(b"+OK maildrop has 2 messages")
    assert s.cmd("STAT").startswith(b"+OK 2 ")
    s.cmd("QUIT")
    assert backend.deleted == []


def test_list_and_uidl_after_dele_and_rset_are_exact():
    bodies = [b"Subject: %d\r\n\r\n%s\r\n" % (n, b"x" * n) for n in range(1, 5)]
    s = Session(_box(*bodies))
    s.login()
    size = [len(b) for b in bodies]
    s.cmd("DELE 1")
    s.cmd("DELE 3")
    assert s.cmd("LIST") == b"+OK 2 messages (%d octets)\r\n2 %d\r\n4 %d\r\n.\r\n" % (
        size[1] + size[3], size[1], size[3])
    assert s.cmd("UIDL") == (b"+OK unique-id listing follows\r\n"
                             b"2 uid-2\r\n4 uid-4\r\n.\r\n")
    assert s.cmd("LIST 4") == b"+OK 4 %d\r\n" % size[3]
    assert s.cmd("UIDL 2") == b"+OK 2 uid-2\r\n"
    assert s.cmd("UIDL 3").startswith(b"-ERR no such message: 3")
    s.cmd("RSET")
    assert s.cmd("LIST") == (b"+OK 4 messages (%d octets)\r\n" % sum(size)
                             + b"".join(b"%d %d\r\n" % (n, size[n - 1])
                                        for n in range(1, 5))
                             + b".\r\n")
    assert s.cmd("UIDL") == (b"+OK unique-id listing follows\r\n"
                             + b"".join(b"%d uid-%d\r\n" % (n, n) for n in range(1, 5))
                             + b".\r\n")
    assert s.cmd("LIST 1") == b"+OK 1 %d\r\n" % size[0]


def test_list_and_uidl_of_an_empty_maildrop_are_just_the_terminator():
    s = Session()
    assert s.login() == b"+OK bob@example.com has 0 messages (0 octets)\r\n"
    assert s.cmd("LIST") == b"+OK 0 messages (0 octets)\r\n.\r\n"
    assert s.cmd("UIDL") == b"+OK unique-id listing follows\r\n.\r\n"
    assert s.cmd("LIST 1").startswith(b"-ERR no such message: 1")


def test_every_octet_count_in_list_equals_the_octets_retr_sends():
    bodies = [b"Subject: %d\r\n\r\n" % n + b"line\r\n" * n for n in (1, 7, 300)]
    s = Session(_box(*bodies, prefix=b"Delivered-To: bob@example.com\r\n"))
    s.login()
    listing = s.cmd("LIST").split(b"\r\n")[1:-2]
    for line in listing:
        number, size = line.split()
        head, _, rest = s.cmd(f"RETR {int(number)}").partition(b"\r\n")
        assert head == b"+OK %s octets" % size
        assert len(rest) - len(b".\r\n") == int(size)


def test_dropped_connection_deletes_nothing_and_releases_the_lock():
    backend = _box(BODY1)
    s = Session(backend)
    s.login()
    s.cmd("DELE 1")
    s.proto.connectionLost(None)
    assert backend.deleted == []
    assert backend.locks == {}


@pytest.mark.parametrize("arg", ["0", "abc", "999", "-1", "1 2", "", "1.0", "+1"])
def test_dele_with_a_bad_message_number_is_err(arg):
    """Twisted: DELE 0 deleted the last message, DELE 999 said +OK, DELE abc dropped
    the session (twisted-mail.md §3)."""
    backend = _box(BODY1, BODY2)
    s = Session(backend)
    s.login()
    assert s.cmd(f"DELE {arg}".strip()).startswith(b"-ERR")
    assert s.cmd("STAT").startswith(b"+OK 2 ")
    s.cmd("QUIT")
    assert backend.deleted == []


def test_second_session_on_the_same_mailbox_is_in_use():
    backend = _box(BODY1)
    first = Session(backend)
    first.login()
    second = Session(backend)
    assert second.login().startswith(b"-ERR [IN-USE] ")
    first.cmd("QUIT")
    assert second.login().startswith(b"+OK")


def test_byte_stuffing_of_the_first_line_and_of_lone_dots():
    """Twisted never stuffed the first line (twisted-mail.md §3)."""
    body = b".starts with dot\r\nmiddle\r\n.\r\n..two\r\nend\r\n"
    s = Session(_box(body))
    s.login()
    reply = s.cmd("RETR 1")
    assert reply.split(b"\r\n", 1)[1] == (
        b"..starts with dot\r\nmiddle\r\n..\r\n...two\r\nend\r\n.\r\n")


def test_byte_stuffing_across_chunk_boundaries():
    """Twisted missed dots at 16 KiB boundaries; a lone '.' there truncated the
    message (twisted-mail.md §3)."""
    from mailet_mta.pop3 import streaming

    line = b"x" * (streaming.CHUNK - 2) + b"\r\n"        # the next line starts a chunk
    body = line + b".\r\n" + line + b".dot\r\n" + b"tail\r\n"
    s = Session(_box(body))
    s.login()
    reply = s.cmd("RETR 1").split(b"\r\n", 1)[1]
    assert reply == line + b"..\r\n" + line + b"..dot\r\ntail\r\n.\r\n"


def test_crlf_message_is_not_sent_as_cr_cr_lf():
    """Twisted sent CRLF-stored messages as CR CR LF (twisted-mail.md §3)."""
    s = Session(_box(BODY1))
    s.login()
    assert b"\r\r\n" not in s.cmd("RETR 1")


def test_message_without_final_line_break_gets_crlf_before_the_terminator():
    s = Session(_box(b"Subject: x\r\n\r\nno newline"))
    s.login()
    assert s.cmd("RETR 1").endswith(b"\r\nno newline\r\n.\r\n")


def test_top_sends_headers_blank_line_and_n_body_lines():
    body = b"Subject: t\r\nFrom: a@b\r\n\r\nl1\r\nl2\r\n.l3\r\nl4\r\n"
    s = Session(_box(body, prefix=b"Return-Path: <a@b>\r\n"))
    s.login()
    assert s.cmd("TOP 1 0") == (b"+OK top of message follows\r\nReturn-Path: <a@b>\r\n"
                                b"Subject: t\r\nFrom: a@b\r\n\r\n.\r\n")
    assert s.cmd("TOP 1 3").endswith(b"\r\n\r\nl1\r\nl2\r\n..l3\r\n.\r\n")
    assert s.cmd("TOP 1 99").endswith(b"l4\r\n.\r\n")
    assert s.cmd("TOP 1").startswith(b"-ERR")
    assert s.cmd("TOP 1 x").startswith(b"-ERR")
    assert s.cmd("TOP 9 1").startswith(b"-ERR")


def test_top_on_a_message_without_body():
    s = Session(_box(b"Subject: only headers\r\n"))
    s.login()
    assert s.cmd("TOP 1 5") == b"+OK top of message follows\r\nSubject: only headers\r\n.\r\n"


def test_last_reports_the_highest_retrieved_message():
    s = Session(_box(BODY1, BODY2))
    s.login()
    assert s.cmd("LAST") == b"+OK 0\r\n"
    s.cmd("RETR 2")
    s.cmd("RETR 1")
    assert s.cmd("LAST") == b"+OK 2\r\n"
    s.cmd("RSET")
    assert s.cmd("LAST") == b"+OK 0\r\n"


def test_noop():
    s = Session()
    s.login()
    assert s.cmd("NOOP") == b"+OK\r\n"


def test_capa_lists_rfc2449_capabilities():
    s = Session(tls_context=object())
    caps = s.cmd("CAPA").split(b"\r\n")
    assert caps[0].startswith(b"+OK")
    for cap in (b"TOP", b"UIDL", b"USER", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING",
                b"SASL PLAIN", b"STLS", b"IMPLEMENTATION mailet-mta"):
        assert cap in caps
    assert b"PIPELINE" not in caps          # Twisted's misspelling (twisted-mail.md §3)
    assert caps[-2:] == [b".", b""]


def test_capa_without_tls_context_has_no_stls():
    assert b"STLS" not in Session().cmd("CAPA")


def test_capa_after_login_has_no_user_or_stls():
    s = Session(tls_context=object())
    s.login()
    caps = s.cmd("CAPA")
    assert b"STLS" not in caps and b"\r\nUSER\r\n" not in caps


def test_stls_starts_tls_and_discards_pipelined_input():
    ctx = object()
    s = Session(tls_context=ctx)
    reply = s.send(b"STLS\r\nUSER injected@example.com\r\nPASS secret\r\n")
    assert reply == b"+OK begin TLS negotiation\r\n"
    assert s.transport.tls_started is ctx
    assert s.cmd("PASS secret").startswith(b"-ERR send USER first")
    assert s.cmd("STLS").startswith(b"-ERR")
    assert b"STLS" not in s.cmd("CAPA")


def test_stls_without_certificate_is_err():
    assert Session().cmd("STLS").startswith(b"-ERR")


def test_require_ssl_refuses_login_before_stls():
    s = Session(config=POP3ServerConfig(require_ssl=True), tls_context=object())
    assert s.cmd("USER bob@example.com").startswith(b"-ERR [AUTH] TLS is required")
    assert s.cmd("PASS secret").startswith(b"-ERR [AUTH]")
    assert s.cmd("AUTH PLAIN AGJvYkBleGFtcGxlLmNvbQBzZWNyZXQ=").startswith(b"-ERR [AUTH]")
    assert b"USER" not in s.cmd("CAPA")
    s.cmd("STLS")
    assert s.login().startswith(b"+OK")


def _plain(authz, user, password):
    return base64.b64encode(f"{authz}\0{user}\0{password}".encode()).decode()


def test_auth_plain_with_initial_response():
    s = Session(_box(BODY1))
    assert s.cmd("AUTH PLAIN " + _plain("", "bob@example.com", "secret")).startswith(
        b"+OK bob@example.com has 1 messages")


def test_auth_plain_with_continuation():
    s = Session()
    assert s.cmd("AUTH PLAIN") == b"+ \r\n"
    assert s.cmd(_plain("bob@example.com", "bob@example.com", "secret")).startswith(b"+OK")


def test_auth_plain_cancelled_with_star():
    s = Session()
    s.cmd("AUTH PLAIN")
    assert s.cmd("*") == b"-ERR authentication cancelled\r\n"
    assert s.cmd("NOOP").startswith(b"-ERR")          # still AUTHORIZATION


def test_auth_plain_wrong_password_is_auth_error():
    s = Session()
    assert s.cmd("AUTH PLAIN " + _plain("", "bob@example.com", "bad")).startswith(
        b"-ERR [AUTH] ")


def test_auth_plain_malformed_or_other_identity_is_refused():
    s = Session()
    assert s.cmd("AUTH PLAIN !!!notbase64").startswith(b"-ERR [AUTH] malformed")
    assert s.cmd("AUTH PLAIN " + base64.b64encode(b"no nuls").decode()).startswith(
        b"-ERR [AUTH] malformed")
    assert s.cmd("AUTH PLAIN " + _plain("amy@example.com", "bob@example.com",
                                        "secret")).startswith(b"-ERR [AUTH]")
    assert s.cmd("AUTH CRAM-MD5").startswith(b"-ERR unsupported")
    assert s.cmd("AUTH") == b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n"


def test_pipelined_commands_wait_for_an_asynchronous_login():
    """Twisted answered pipelined USER/PASS/STAT with an async checker with
    '-ERR not authenticated yet' (twisted-mail.md §3)."""
    backend = _box(BODY1)
    held = backend.hold_login = defer.Deferred()
    s = Session(backend)
    reply = s.send(b"USER bob@example.com\r\nPASS secret\r\nSTAT\r\nLIST\r\nQUIT\r\n")
    assert reply == b"+OK send PASS\r\n"
    held.callback(None)
    rest = s.take()
    assert rest == (b"+OK bob@example.com has 1 messages (%d octets)\r\n"
                    b"+OK 1 %d\r\n+OK 1 messages (%d octets)\r\n1 %d\r\n.\r\n"
                    b"+OK bye (0 messages deleted)\r\n") % ((len(BODY1),) * 4)


def test_pipelined_retr_responses_stay_in_order():
    s = Session(_box(BODY1, BODY2))
    s.login()
    reply = s.send(b"RETR 1\r\nRETR 2\r\nSTAT\r\n")
    assert reply == (b"+OK %d octets\r\n" % len(BODY1) + BODY1 + b".\r\n"
                     + b"+OK %d octets\r\n" % len(BODY2) + BODY2 + b".\r\n"
                     + b"+OK 2 %d\r\n" % (len(BODY1) + len(BODY2)))


def _writes(s: Session) -> list:
    calls = []
    write = s.transport.write

    def counting(data):
        calls.append(data)
        write(data)
    s.transport.write = counting
    return calls


def test_retr_of_a_read_ahead_message_is_one_write_stuffed_like_a_streamed_one():
    tricky = b"Subject: dots\r\n\r\n.starts with a dot\r\n.\r\nno final line break"
    s = Session(_box(BODY1, tricky, prefix=b"X-Prefix: p\r\n"))
    s.login()
    streamed = s.cmd("RETR 2")              # read from the store, streamed
    first = s.cmd("RETR 1")                 # reads 1 and 2 in one batch
    writes = _writes(s)
    again = s.cmd("RETR 2")                 # from the read-ahead: one piece
    assert again == streamed
    assert len(writes) == 1
    assert again == (b"+OK %d octets\r\nX-Prefix: p\r\nSubject: dots\r\n\r\n"
                     b"..starts with a dot\r\n..\r\nno final line break\r\n.\r\n"
                     % (len(tricky) + len(b"X-Prefix: p\r\n")))
    assert first.endswith(BODY1 + b".\r\n")


def test_retr_of_a_read_ahead_message_over_one_chunk_is_streamed():
    from mailet_mta.pop3.streaming import CHUNK
    big = b"Subject: big\r\n\r\n" + b"x" * 78 + b"\r\n" + b"y" * 78 + b"\r\n"
    big *= CHUNK // len(big) + 1
    s = Session(_box(BODY1, big))
    s.login()
    s.cmd("RETR 1")                         # reads 1 and 2 in one batch
    writes = _writes(s)
    reply = s.cmd("RETR 2")
    assert reply == b"+OK %d octets\r\n" % len(big) + big + b".\r\n"
    assert len(writes) > 1                  # chunk by chunk, under flow control


def test_commands_split_across_packets_and_bare_lf():
    s = Session(_box(BODY1))
    s.send(b"US")
    assert s.send(b"ER bob@example.com\r") == b""
    assert s.send(b"\n").startswith(b"+OK")
    assert s.send(b"PASS secret\n").startswith(b"+OK")
    assert s.send(b"stat\r\n").startswith(b"+OK 1 ")


def test_overlong_line_is_refused_and_session_continues():
    s = Session()
    assert s.send(b"USER " + b"a" * 20000 + b"\r\n").startswith(b"-ERR line too long")
    assert s.cmd("CAPA").startswith(b"+OK")


def test_retr_storage_failure_is_sys_temp_and_session_continues():
    backend = _box(BODY1)
    s = Session(backend)
    s.login()
    backend.fail_open = True
    assert s.cmd("RETR 1").startswith(b"-ERR [SYS/TEMP]")
    backend.fail_open = False
    assert s.cmd("STAT").startswith(b"+OK")


def test_message_removed_by_someone_else_is_sys_perm():
    backend = _box(BODY1)
    s = Session(backend)
    s.login()
    backend.boxes["bob@example.com"].clear()
    assert s.cmd("RETR 1").startswith(b"-ERR [SYS/PERM]")


def test_idle_session_is_closed_after_the_timeout():
    s = Session(config=POP3ServerConfig(connection_timeout=30))
    s.clock.advance(29)
    assert not s.transport.disconnecting
    s.cmd("NOOP")
    s.clock.advance(29)
    assert not s.transport.disconnecting
    s.clock.advance(2)
    assert s.transport.disconnecting
    assert s.take().startswith(b"-ERR idle timeout")


def test_lost_lease_ends_the_session():
    backend = _box(BODY1)
    s = Session(backend)
    s.login()
    aborted = []
    s.transport.abortConnection = lambda: aborted.append(True)
    backend.locks.clear()
    s.clock.advance(backend.lease_seconds / 3 + 1)
    assert aborted


def test_lease_is_refreshed_while_the_session_lives():
    backend = _box(BODY1)
    s = Session(backend)
    s.login()
    refreshed = []
    original = backend.refresh
    backend.refresh = lambda u, o: refreshed.append(u) or original(u, o)
    s.clock.pump([backend.lease_seconds / 3] * 3)
    assert len(refreshed) == 3


def test_quit_in_authorization_closes():
    s = Session()
    assert s.cmd("QUIT") == b"+OK bye\r\n"
    assert s.transport.disconnecting


def test_apop_is_refused():
    assert Session().cmd("APOP bob 0123").startswith(b"-ERR [AUTH]")


def test_connection_limit_refuses_extra_sessions():
    backend = MemoryBackend()
    config = POP3ServerConfig(connection_limit=1)
    factory = POP3ServerFactory(config, backend, None, task.Clock())
    sessions = []
    for _ in range(2):
        proto = factory.buildProtocol(None)
        t = StringTransport()
        proto.makeConnection(t)
        sessions.append(t)
    assert sessions[0].value().startswith(b"+OK")
    assert sessions[1].value().startswith(b"-ERR [SYS/TEMP] too many connections")


# -- named regressions for the defects of twisted.mail.pop3 (twisted-mail.md §3) --------

def test_twisted_defect_dele_0_does_not_delete_the_last_message():
    backend = _box(BODY1, BODY2)
    s = Session(backend)
    s.login()
    assert s.cmd("DELE 0").startswith(b"-ERR no such message")
    s.cmd("QUIT")
    assert backend.deleted == []


def test_twisted_defect_dele_999_is_not_ok():
    s = Session(_box(BODY1))
    s.login()
    assert s.cmd("DELE 999").startswith(b"-ERR no such message: 999")


def test_twisted_defect_dele_abc_keeps_the_session():
    s = Session(_box(BODY1))
    s.login()
    assert s.cmd("DELE abc").startswith(b"-ERR")
    assert not s.transport.disconnecting
    assert s.cmd("NOOP") == b"+OK\r\n"


def test_twisted_defect_list_and_uidl_hide_deleted_messages_9094():
    s = Session(_box(BODY1, BODY2))
    s.login()
    s.cmd("DELE 2")
    assert b"\r\n2 " not in s.cmd("LIST")
    assert b"\r\n2 " not in s.cmd("UIDL")


def test_twisted_defect_quit_answers_only_after_the_deletion_is_committed():
    backend = _box(BODY1)
    held = backend.hold_finish = defer.Deferred()
    s = Session(backend)
    s.login()
    s.cmd("DELE 1")
    assert s.cmd("QUIT") == b""
    assert not s.transport.disconnecting
    held.callback(None)
    assert s.take() == b"+OK bye (1 messages deleted)\r\n"
    assert backend.deleted == [1]


def test_twisted_defect_failed_deletion_at_quit_is_reported():
    backend = _box(BODY1)
    held = backend.hold_finish = defer.Deferred()
    s = Session(backend)
    s.login()
    s.cmd("DELE 1")
    s.cmd("QUIT")
    held.errback(RuntimeError("database gone"))
    assert s.take().startswith(b"-ERR [SYS/TEMP] some deleted messages were not removed")
    assert s.transport.disconnecting


def test_twisted_defect_error_texts_do_not_leak_exception_names():
    backend = _box(BODY1)
    s = Session(backend)
    s.login()
    backend.fail_open = True
    reply = s.cmd("RETR 1")
    assert b"RuntimeError" not in reply and b"disk on fire" not in reply


def test_twisted_defect_capa_says_pipelining_not_pipeline():
    caps = Session().cmd("CAPA").split(b"\r\n")
    assert b"PIPELINING" in caps and b"PIPELINE" not in caps


def test_mailbox_that_cannot_be_listed_is_sys_temp_and_the_lease_is_released():
    backend = _box(BODY1)
    backend.fail_open = True
    s = Session(backend)
    assert s.login().startswith(b"-ERR [SYS/TEMP]")
    assert backend.locks == {}
    backend.fail_open = False
    assert s.login().startswith(b"+OK")


class HeldReads(MemoryBackend):
    """open_messages answers only when the test says so (``release``), or fails."""

    def __init__(self):
        super().__init__()
        self.reads: list = []          # (ids, Deferred)

    def open_messages(self, message_ids):
        d = defer.Deferred()
        self.reads.append((list(message_ids), d))
        return d

    def release(self, index: int = -1, fail: bool = False):
        ids, d = self.reads[index]
        if fail:
            d.errback(RuntimeError("disk on fire"))
        else:
            d.callback(super().open_messages(ids).result)


def _numbered_box(backend, count):
    bodies = [b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n) for n in range(count)]
    for body in bodies:
        backend.add("bob@example.com", body, b"")
    return bodies


def test_the_next_batch_is_read_while_the_second_half_of_this_one_is_sent():
    from mailet_mta.pop3.commands import READAHEAD_MESSAGES
    backend = HeldReads()
    bodies = _numbered_box(backend, 2 * READAHEAD_MESSAGES)
    s = Session(backend)
    s.login()
    assert s.cmd("RETR 1") == b""                    # waits for the first batch
    backend.release(0)
    assert s.take().endswith(bodies[0] + b".\r\n")
    half = READAHEAD_MESSAGES // 2
    for n in range(2, half):
        assert s.cmd(f"RETR {n}").endswith(bodies[n - 1] + b".\r\n")
    assert len(backend.reads) == 1
    s.cmd(f"RETR {half}")                           # half of the batch is sent: read on
    assert len(backend.reads) == 2
    assert backend.reads[1][0] == list(range(READAHEAD_MESSAGES + 1,
                                             2 * READAHEAD_MESSAGES + 1))
    for n in range(half + 1, READAHEAD_MESSAGES + 1):
        assert s.cmd(f"RETR {n}").endswith(bodies[n - 1] + b".\r\n")
    # The next message is in the read in flight: RETR waits for it, then answers.
    assert s.cmd(f"RETR {READAHEAD_MESSAGES + 1}") == b""
    backend.release(1)
    assert s.take().endswith(bodies[READAHEAD_MESSAGES] + b".\r\n")
    assert len(backend.reads) == 2
    assert len(s.proto._readahead) <= READAHEAD_MESSAGES


def test_a_failed_read_ahead_costs_nothing_but_a_read_of_its_own():
    from mailet_mta.pop3.commands import READAHEAD_MESSAGES
    backend = HeldReads()
    bodies = _numbered_box(backend, READAHEAD_MESSAGES + 2)
    s = Session(backend)
    s.login()
    s.cmd("RETR 1")
    backend.release(0)
    s.take()
    for n in range(2, READAHEAD_MESSAGES + 1):
        s.cmd(f"RETR {n}")
    assert len(backend.reads) == 2
    backend.release(1, fail=True)                   # the read ahead fails
    assert s.cmd(f"RETR {READAHEAD_MESSAGES + 1}") == b""
    assert len(backend.reads) == 3                  # the RETR reads for itself
    backend.release(2)
    assert s.take().endswith(bodies[READAHEAD_MESSAGES] + b".\r\n")


def test_a_client_that_jumps_gets_a_fresh_batch_and_the_stale_one_is_dropped():
    from mailet_mta.pop3.commands import READAHEAD_MAX_MESSAGES, READAHEAD_MESSAGES
    backend = HeldReads()
    far = READAHEAD_MESSAGES + READAHEAD_MAX_MESSAGES + 5   # past the read ahead
    bodies = _numbered_box(backend, far + 10)
    s = Session(backend)
    s.login()
    s.cmd("RETR 1")
    backend.release(0)
    s.take()
    for n in range(2, READAHEAD_MESSAGES // 2 + 2):
        s.cmd(f"RETR {n}")
    assert len(backend.reads) == 2                  # reading ahead from message 65
    assert s.cmd(f"RETR {far}") == b""              # elsewhere: a read of its own
    assert backend.reads[2][0][0] == far
    backend.release(1)                              # the stale read lands: dropped
    assert not set(backend.reads[1][0]) & set(s.proto._readahead)
    backend.release(2)
    assert s.take().endswith(bodies[far - 1] + b".\r\n")


def _retr_in_order(s, backend, last: int) -> int:
    """RETR 2..last, each read ahead landing at once; the most messages held."""
    peak = 0
    for n in range(2, last + 1):
        s.cmd(f"RETR {n}")
        if len(backend.reads) > 1 and not backend.reads[-1][1].called:
            backend.release()                       # each read ahead lands at once
        peak = max(peak, len(s.proto._readahead))
    return peak


def test_a_session_holds_at_most_one_and_a_half_of_the_largest_batch_read_ahead():
    from mailet_mta.pop3.commands import READAHEAD_MAX_MESSAGES
    backend = HeldReads()
    _numbered_box(backend, 4 * READAHEAD_MAX_MESSAGES)
    s = Session(backend)
    s.login()
    s.cmd("RETR 1")
    backend.release(0)
    s.take()
    peak = _retr_in_order(s, backend, 4 * READAHEAD_MAX_MESSAGES)
    assert READAHEAD_MAX_MESSAGES < peak <= READAHEAD_MAX_MESSAGES * 3 // 2
    assert max(len(ids) for ids, _d in backend.reads) == READAHEAD_MAX_MESSAGES


def test_each_batch_read_ahead_doubles_up_to_the_max_and_a_jump_starts_over():
    from mailet_mta.pop3.commands import READAHEAD_MAX_MESSAGES, READAHEAD_MESSAGES
    backend = HeldReads()
    count = 6 * READAHEAD_MAX_MESSAGES
    _numbered_box(backend, count)
    s = Session(backend)
    s.login()
    s.cmd("RETR 1")
    backend.release(0)
    s.take()
    _retr_in_order(s, backend, 3 * READAHEAD_MAX_MESSAGES)
    sizes = [len(ids) for ids, _d in backend.reads]
    expected, size = [], READAHEAD_MESSAGES
    while sum(expected) < 3 * READAHEAD_MAX_MESSAGES:
        expected.append(size)
        size = min(2 * size, READAHEAD_MAX_MESSAGES)
    assert sizes[:len(expected)] == expected        # 64, 128, 256, 256, ...
    reads = len(backend.reads)
    far = count - READAHEAD_MESSAGES - 5
    s.cmd(f"RETR {far}")                            # elsewhere: the first bounds again
    backend.release()
    assert len(backend.reads[reads][0]) == READAHEAD_MESSAGES


def test_batches_read_ahead_keep_to_the_max_octets():
    from mailet_mta.pop3.commands import READAHEAD_MAX_OCTETS, READAHEAD_OCTETS
    backend = HeldReads()
    size = READAHEAD_OCTETS // 16                   # 16 messages fill the first bounds
    for n in range(16 * READAHEAD_MAX_OCTETS // size):
        backend.add("bob@example.com", b"Subject: m%d\r\n\r\n" % n + b"x" * size, b"")
    s = Session(backend)
    s.login()
    s.cmd("RETR 1")
    backend.release(0)
    s.take()
    _retr_in_order(s, backend, 4 * READAHEAD_MAX_OCTETS // size)
    octets = [len(ids) * size for ids, _d in backend.reads]
    assert max(octets) <= READAHEAD_MAX_OCTETS
    assert len(backend.reads[0][0]) < 16 < max(len(ids) for ids, _d in backend.reads)


def _on_transport(backend, transport):
    """A session on ``transport`` (a test transport class's instance) and its clock."""
    clock = task.Clock()
    factory = POP3ServerFactory(POP3ServerConfig(connection_timeout=60), backend, None,
                                clock)
    proto = factory.buildProtocol(None)
    proto.makeConnection(transport)
    return proto, clock


def test_a_read_ahead_retr_is_sent_in_the_call_that_read_the_command():
    backend = MemoryBackend()
    bodies = _numbered_box(backend, 3)
    transport = SendingTransport()
    proto, clock = _on_transport(backend, transport)
    for line in (b"USER bob@example.com", b"PASS secret", b"RETR 1"):
        proto.dataReceived(line + b"\r\n")
        clock.advance(0)
        transport.doWrite()
    proto.dataReceived(b"RETR 2\r\n")             # read ahead by RETR 1
    assert transport.sent.endswith(bodies[1] + b".\r\n")
    assert transport.value() == b""


def test_a_whole_listing_reads_the_first_batch_before_the_first_retr():
    from mailet_mta.pop3.commands import READAHEAD_MESSAGES
    backend = HeldReads()
    bodies = _numbered_box(backend, 2 * READAHEAD_MESSAGES)
    s = Session(backend)
    s.login()
    s.cmd("STAT")
    s.cmd("LIST 3")
    s.cmd("UIDL 3")
    assert backend.reads == []                  # logged in, no whole listing: nothing
    s.cmd("DELE 1")
    assert s.cmd("LIST").endswith(b".\r\n")
    assert [ids for ids, _d in backend.reads] == [list(range(2, READAHEAD_MESSAGES + 2))]
    s.cmd("UIDL")
    assert len(backend.reads) == 1              # one first batch per session
    assert s.cmd("RETR 2") == b""               # waits for the read under way
    backend.release(0)
    assert s.take().endswith(bodies[1] + b".\r\n")
    assert s.cmd("RETR 3").endswith(bodies[2] + b".\r\n")
    assert len(backend.reads) == 1


def test_a_client_that_lists_then_retrs_elsewhere_drops_the_first_batch():
    from mailet_mta.pop3.commands import READAHEAD_MAX_MESSAGES, READAHEAD_MESSAGES
    backend = HeldReads()
    far = READAHEAD_MESSAGES + READAHEAD_MAX_MESSAGES
    bodies = _numbered_box(backend, far + 10)
    s = Session(backend)
    s.login()
    s.cmd("UIDL")
    assert s.cmd(f"RETR {far}") == b""          # not in the first batch: a read of its own
    assert backend.reads[1][0][0] == far
    backend.release(0)                          # the first batch lands late: dropped
    assert not s.proto._readahead
    backend.release(1)
    assert s.take().endswith(bodies[far - 1] + b".\r\n")
    assert s.cmd("RETR 1") == b""               # read again, from message 1
    assert backend.reads[2][0][0] == 1


def test_the_first_batch_is_read_once_a_listing_over_the_buffer_bound_is_sent():
    backend = HeldReads()
    _numbered_box(backend, 20)
    transport = BoundedTransport()
    proto, _clock = _on_transport(backend, transport)
    for line in (b"USER bob@example.com", b"PASS secret"):
        proto.dataReceived(line + b"\r\n")
    transport.clear()
    transport.bound = 100                       # the listing fills the buffer
    proto.dataReceived(b"LIST\r\n")
    assert transport.producerState == "producing" and proto._flow.blocked
    assert backend.reads == []                  # the listing waits to be sent
    assert transport.drain().endswith(b".\r\n")
    assert [ids for ids, _d in backend.reads] == [list(range(1, 21))]
