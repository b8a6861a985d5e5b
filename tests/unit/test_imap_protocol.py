"""IMAP session rules, driven through StringTransport over an in-memory store."""

from __future__ import annotations

import base64
import re

from twisted.internet import task
from twisted.internet.testing import StringTransport

from mailet_mta.config.model import IMAPServerConfig
from mailet_mta.imap.factory import IMAPServerFactory
from tests.unit.imap_memory_store import MemoryIMAPStore

MESSAGE = b"From: a@example.com\r\nSubject: hello\r\n\r\nbody line\r\n"


class TLSStringTransport(StringTransport):
    def __init__(self):
        super().__init__()
        self.tls_started = None

    def startTLS(self, ctx):
        self.tls_started = ctx


class Session:
    def __init__(self, store=None, config=None, tls_context=None):
        self.clock = task.Clock()
        self.store = store or MemoryIMAPStore()
        self.config = config or IMAPServerConfig(connection_timeout=1800)
        self.factory = IMAPServerFactory(self.config, self.store, tls_context, self.clock,
                                         run=_in_place)
        self.proto = self.factory.buildProtocol(None)
        self.transport = TLSStringTransport()
        self.proto.makeConnection(self.transport)
        self.greeting = self.take()

    def take(self) -> bytes:
        self.clock.advance(0)
        out = self.transport.value()
        self.transport.clear()
        return out

    def send(self, data: bytes) -> bytes:
        self.proto.dataReceived(data)
        return self.take()

    def cmd(self, line: str) -> bytes:
        return self.send(line.encode() + b"\r\n")

    def login(self) -> bytes:
        out = self.cmd("a LOGIN bob@example.com secret")
        assert b"a OK" in out, out
        return out

    def select(self, name="INBOX") -> bytes:
        self.login()
        out = self.cmd(f"s SELECT {name}")
        assert b"s OK [READ-WRITE]" in out, out
        return out


def _in_place(fn, *args):
    from twisted.internet import defer
    return defer.maybeDeferred(fn, *args)


def test_greeting_lists_capabilities_with_auth_plain():
    s = Session()
    assert s.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    assert b"AUTH=PLAIN" in s.greeting and b"LITERAL+" in s.greeting


def test_capability_after_login_names_the_extensions():
    s = Session()
    s.login()
    out = s.cmd("c CAPABILITY")
    for cap in (b"UIDPLUS", b"MOVE", b"IDLE", b"CONDSTORE", b"SPECIAL-USE", b"UNSELECT",
                b"NAMESPACE", b"ENABLE", b"UTF8=ACCEPT"):
        assert cap in out
    assert out.endswith(b"c OK CAPABILITY completed\r\n")


def test_login_with_a_wrong_password_is_authenticationfailed():
    s = Session()
    assert s.cmd("a LOGIN bob@example.com nope") == \
        b"a NO [AUTHENTICATIONFAILED] invalid user name or password\r\n"


def test_three_failed_logins_close_the_connection():
    s = Session()
    for _ in range(2):
        s.cmd("a LOGIN bob@example.com nope")
    out = s.cmd("a LOGIN bob@example.com nope")
    assert b"* BYE" in out and s.transport.disconnecting


def test_throttled_address_gets_unavailable_and_bye():
    store = MemoryIMAPStore()
    s = Session(store)
    store.throttled.add(s.proto.client_ip)
    out = s.cmd("a LOGIN bob@example.com secret")
    assert b"a NO [UNAVAILABLE]" in out and b"* BYE" in out
    assert s.transport.disconnecting


def test_login_creates_the_special_use_folders():
    s = Session()
    s.login()
    out = s.cmd('l LIST "" "*"')
    assert b'* LIST (\\HasNoChildren) "/" "INBOX"' in out or b"INBOX" in out
    assert b'\\Sent) "/" "Sent"' in out and b'\\Junk) "/" "Junk"' in out
    assert out.endswith(b"l OK LIST completed\r\n")


def test_authenticate_plain_with_initial_response():
    s = Session()
    token = base64.b64encode(b"\0bob@example.com\0secret").decode()
    out = s.cmd(f"a AUTHENTICATE PLAIN {token}")
    assert b"a OK [CAPABILITY" in out


def test_authenticate_plain_with_continuation():
    s = Session()
    assert s.cmd("a AUTHENTICATE PLAIN") == b"+ \r\n"
    token = base64.b64encode(b"\0bob@example.com\0secret")
    assert b"a OK" in s.send(token + b"\r\n")
    assert s.proto.state == "authenticated"


def test_authenticate_cancelled():
    s = Session()
    s.cmd("a AUTHENTICATE PLAIN")
    assert s.cmd("*") == b"a BAD authentication cancelled\r\n"


def test_require_ssl_advertises_logindisabled_and_refuses_login():
    config = IMAPServerConfig(require_ssl=True)
    s = Session(config=config, tls_context=object())
    assert b"LOGINDISABLED" in s.greeting and b"STARTTLS" in s.greeting
    assert b"AUTH=PLAIN" not in s.greeting
    assert b"a NO [PRIVACYREQUIRED]" in s.cmd("a LOGIN bob@example.com secret")


def test_starttls_drops_input_sent_before_the_handshake():
    ctx = object()
    s = Session(config=IMAPServerConfig(require_ssl=True), tls_context=ctx)
    out = s.send(b"t STARTTLS\r\nx LOGIN bob@example.com secret\r\n")
    assert out == b"t OK begin TLS negotiation now\r\n"
    assert s.transport.tls_started is ctx
    assert b"AUTH=PLAIN" in s.cmd("c CAPABILITY")


def test_commands_are_refused_in_the_wrong_state():
    s = Session()
    assert s.cmd("a SELECT INBOX").startswith(b"a BAD SELECT is not valid")
    s.login()
    assert s.cmd("f FETCH 1 FLAGS").startswith(b"f BAD FETCH is not valid")


def test_unknown_command_and_syntax_errors_keep_the_session():
    s = Session()
    assert s.cmd("a FROB") == b"a BAD unknown command FROB\r\n"
    assert s.cmd('a LOGIN "bob').startswith(b"a BAD")
    assert s.cmd("n NOOP") == b"n OK NOOP completed\r\n"


def test_synchronising_literal_gets_a_continuation():
    s = Session()
    assert s.cmd("a LOGIN {15}") == b"+ Ready for literal data\r\n"
    out = s.send(b"bob@example.com {6}\r\n")
    assert out == b"+ Ready for literal data\r\n"
    assert b"a OK" in s.send(b"secret\r\n")


def test_literal_plus_login():
    s = Session()
    assert b"a OK" in s.send(b"a LOGIN {15+}\r\nbob@example.com {6+}\r\nsecret\r\n")


def test_select_reports_the_folder_state():
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE, flags={"\\Seen"})
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    out = s.select()
    assert b"* 2 EXISTS\r\n" in out and b"* 0 RECENT\r\n" in out
    assert b"* OK [UNSEEN 2]" in out
    assert re.search(rb"\* OK \[UIDVALIDITY \d+\]", out)
    assert b"* OK [UIDNEXT 3]" in out and b"[HIGHESTMODSEQ" in out
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)" in out


def test_examine_is_read_only():
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.login()
    assert b"e OK [READ-ONLY]" in s.cmd("e EXAMINE INBOX")
    assert b"t NO [READ-ONLY]" in s.cmd("t STORE 1 +FLAGS (\\Deleted)")


def test_select_of_a_missing_folder_is_nonexistent():
    s = Session()
    s.login()
    assert s.cmd("s SELECT Nope") == b"s NO [NONEXISTENT] no such mailbox\r\n"


def test_store_answers_flags_and_silent_answers_nothing():
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.select()
    out = s.cmd("t STORE 1 +FLAGS (\\Flagged)")
    assert out == b"* 1 FETCH (FLAGS (\\Flagged))\r\nt OK STORE completed\r\n"
    assert s.cmd("t STORE 1 -FLAGS.SILENT (\\Flagged)") == b"t OK STORE completed\r\n"
    assert store.folders["bob@example.com"]["INBOX"].messages[0]["flags"] == frozenset()


def test_store_unchangedsince_reports_modified():
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.select()
    out = s.cmd("t STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)")
    assert b"t OK [MODIFIED 1]" in out


def test_expunge_and_uid_expunge():
    store = MemoryIMAPStore()
    for _ in range(4):
        store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.select()
    s.cmd("t STORE 1:4 +FLAGS.SILENT (\\Deleted)")
    assert s.cmd("u UID EXPUNGE 4") == b"* 4 EXPUNGE\r\nu OK EXPUNGE completed\r\n"
    assert s.cmd("e EXPUNGE") == b"* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n" \
        b"e OK EXPUNGE completed\r\n"
    assert store.folders["bob@example.com"]["INBOX"].messages == []


def test_copy_answers_copyuid_and_missing_folder_trycreate():
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE)
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.select()
    out = s.cmd("c COPY 1:2 Archive")
    validity = store.folders["bob@example.com"]["Archive"].validity
    assert out == f"c OK [COPYUID {validity} 1:2 1:2] COPY completed\r\n".encode()
    assert s.cmd("c COPY 1 Nowhere") == b"c NO [TRYCREATE] no such mailbox\r\n"


def test_move_expunges_from_the_source():
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE)
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.select()
    out = s.cmd("m UID MOVE 2 Trash")
    assert b"* OK [COPYUID" in out and b"* 2 EXPUNGE\r\n" in out
    assert out.endswith(b"m OK MOVE completed\r\n")
    assert len(store.folders["bob@example.com"]["Trash"].messages) == 1


def test_append_answers_appenduid_and_the_selected_session_sees_exists():
    s = Session()
    s.select()
    out = s.send(b"a APPEND INBOX (\\Seen) {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE))
    assert re.search(rb"\* 1 EXISTS\r\n\* 1 RECENT\r\na OK \[APPENDUID \d+ 1\]", out), out


def test_append_to_a_missing_folder_is_trycreate():
    s = Session()
    s.login()
    out = s.send(b"a APPEND Nope {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE))
    assert out == b"a NO [TRYCREATE] no such mailbox\r\n"


def test_append_over_the_literal_limit_is_refused_before_it_is_sent():
    s = Session(config=IMAPServerConfig(max_message_size=100))
    s.login()
    assert s.cmd("a APPEND INBOX {101}").startswith(b"a BAD literal too large")
    assert s.cmd("n NOOP") == b"n OK NOOP completed\r\n"


def test_create_delete_rename_and_list_hierarchy():
    s = Session()
    s.login()
    assert s.cmd("c CREATE Work/2024") == b"c OK CREATE completed\r\n"
    assert s.cmd("c CREATE Work") == b"c NO [ALREADYEXISTS] the mailbox exists already\r\n"
    out = s.cmd('l LIST "" "Work/%"')
    assert out == b'* LIST (\\HasNoChildren) "/" "Work/2024"\r\nl OK LIST completed\r\n'
    out = s.cmd('l LIST "" "%"')
    assert b'* LIST (\\HasChildren) "/" "Work"' in out
    assert b"Work/2024" not in out
    assert s.cmd("r RENAME Work Jobs") == b"r OK RENAME completed\r\n"
    assert b'"Jobs/2024"' in s.cmd('l LIST "" "*"')
    assert s.cmd("d DELETE Nope") == b"d NO [NONEXISTENT] no such mailbox\r\n"
    assert s.cmd("d DELETE INBOX").startswith(b"d NO [CANNOT]")


def test_list_empty_pattern_gives_the_delimiter():
    s = Session()
    s.login()
    assert s.cmd('l LIST "" ""') == b'* LIST (\\Noselect) "/" ""\r\nl OK LIST completed\r\n'


def test_lsub_and_subscribe():
    s = Session()
    s.login()
    s.cmd("c CREATE Lists")
    assert b"Lists" not in s.cmd('l LSUB "" "*"')
    assert s.cmd("s SUBSCRIBE Lists") == b"s OK SUBSCRIBE completed\r\n"
    assert b'"Lists"' in s.cmd('l LSUB "" "*"')


def test_status_of_a_folder():
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE, flags={"\\Seen"})
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.login()
    out = s.cmd("s STATUS INBOX (MESSAGES UNSEEN UIDNEXT)")
    assert out == b'* STATUS "INBOX" (MESSAGES 2 UNSEEN 1 UIDNEXT 3)\r\ns OK STATUS completed\r\n'


def test_namespace_id_enable():
    s = Session()
    s.login()
    assert s.cmd("n NAMESPACE").startswith(b'* NAMESPACE (("" "/")) NIL NIL')
    assert s.cmd("i ID NIL").startswith(b'* ID ("name" "mailet-mta")')
    assert s.cmd("e ENABLE CONDSTORE").startswith(b"* ENABLED CONDSTORE\r\n")


def test_other_sessions_changes_are_told_at_noop():
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.select()
    store.add("bob@example.com", MESSAGE)
    out = s.cmd("n NOOP")
    assert out == b"* 2 EXISTS\r\n* 1 RECENT\r\nn OK NOOP completed\r\n"


def test_flag_change_by_another_session_is_told():
    store = MemoryIMAPStore()
    msg = store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.select()
    store.store_flags([msg["id"]], frozenset({"\\Seen"}), "add")
    assert s.cmd("n NOOP") == b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\nn OK NOOP completed\r\n"


def test_no_expunge_is_told_during_store():
    store = MemoryIMAPStore()
    first = store.add("bob@example.com", MESSAGE)
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.select()
    store.expunge_messages("bob@example.com", "INBOX", [first["id"]])
    out = s.cmd("t STORE 2 +FLAGS (\\Flagged)")
    assert b"EXPUNGE" not in out and out.endswith(b"t OK STORE completed\r\n")
    assert s.cmd("n NOOP") == b"* 1 EXPUNGE\r\nn OK NOOP completed\r\n"


def test_idle_pushes_new_mail_and_ends_with_done():
    store = MemoryIMAPStore()
    s = Session(store)
    s.select()
    assert s.cmd("i IDLE") == b"+ idling\r\n"
    store.add("bob@example.com", MESSAGE)
    assert s.take() == b"* 1 EXISTS\r\n* 1 RECENT\r\n"
    assert s.cmd("DONE") == b"i OK IDLE terminated\r\n"


def test_idle_ended_by_something_else_is_bad():
    s = Session()
    s.select()
    s.cmd("i IDLE")
    assert s.cmd("x NOOP").startswith(b"i BAD")
    assert s.cmd("n NOOP") == b"n OK NOOP completed\r\n"


def test_close_expunges_silently_and_unselect_does_not():
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.select()
    s.cmd("t STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert s.cmd("u UNSELECT") == b"u OK UNSELECT completed\r\n"
    assert len(store.folders["bob@example.com"]["INBOX"].messages) == 1
    s.cmd("s SELECT INBOX")
    assert s.cmd("c CLOSE") == b"c OK CLOSE completed\r\n"
    assert store.folders["bob@example.com"]["INBOX"].messages == []
    assert s.proto.state == "authenticated"


def test_invalid_sequence_number_is_bad():
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.select()
    assert s.cmd("t STORE 5 +FLAGS (\\Seen)").startswith(b"t BAD")


def test_logout():
    s = Session()
    out = s.cmd("z LOGOUT")
    assert out == b"* BYE mailet-mta logging out\r\nz OK LOGOUT completed\r\n"
    assert s.transport.disconnecting


def test_autologout_after_the_idle_timeout():
    s = Session(config=IMAPServerConfig(connection_timeout=1800))
    s.clock.advance(1801)
    assert s.take().startswith(b"* BYE autologout")
    assert s.transport.disconnecting


def test_connection_limit_per_ip_refuses_with_bye():
    config = IMAPServerConfig(connection_limit_per_ip=1)
    first = Session(config=config)
    proto = first.factory.buildProtocol(None)
    transport = TLSStringTransport()
    proto.makeConnection(transport)
    assert transport.value().startswith(b"* BYE [UNAVAILABLE]")


def test_idle_heartbeat_every_idle_keepalive_seconds():
    s = Session(config=IMAPServerConfig(idle_keepalive=120))
    s.select()
    s.cmd("i IDLE")
    s.clock.advance(120)
    assert s.take() == b"* OK still here\r\n"
    assert s.cmd("DONE") == b"i OK IDLE terminated\r\n"
    s.clock.advance(240)
    assert s.take() == b""


def test_connection_lost_during_idle_stops_the_heartbeat():
    s = Session(config=IMAPServerConfig(idle_keepalive=120))
    s.select()
    s.cmd("i IDLE")
    s.proto.connectionLost(None)
    assert not s.clock.getDelayedCalls() or all(
        not c.active() for c in s.clock.getDelayedCalls())


def _box(*bodies):
    store = MemoryIMAPStore()
    for body in bodies:
        store.add("bob@example.com", body)
    s = Session(store)
    s.select()
    return s, store


def test_fetch_meta_items():
    s, _ = _box(MESSAGE, MESSAGE)
    out = s.cmd("f FETCH 1:* (UID FLAGS RFC822.SIZE)")
    n = len(MESSAGE)
    assert out == (b"* 1 FETCH (UID 1 FLAGS () RFC822.SIZE %d)\r\n"
                   b"* 2 FETCH (UID 2 FLAGS () RFC822.SIZE %d)\r\nf OK FETCH completed\r\n"
                   % (n, n))


def test_uid_fetch_always_answers_the_uid():
    s, _ = _box(MESSAGE, MESSAGE)
    assert s.cmd("f UID FETCH 2 FLAGS") == \
        b"* 2 FETCH (UID 2 FLAGS ())\r\nf OK FETCH completed\r\n"


def test_fetch_body_sets_seen_and_tells_the_flags():
    s, store = _box(MESSAGE)
    out = s.cmd("f FETCH 1 BODY[]")
    assert b"BODY[] {%d}\r\n%s" % (len(MESSAGE), MESSAGE) in out
    assert b"FLAGS (\\Seen)" in out
    assert store.folders["bob@example.com"]["INBOX"].messages[0]["flags"] == {"\\Seen"}


def test_fetch_body_peek_header_fields_does_not_set_seen():
    s, store = _box(MESSAGE)
    out = s.cmd("f FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: hello" in out and b"From:" not in out
    assert store.folders["bob@example.com"]["INBOX"].messages[0]["flags"] == frozenset()


def test_fetch_changedsince_answers_modseq():
    s, store = _box(MESSAGE, MESSAGE)
    high = store.folders["bob@example.com"]["INBOX"].messages[0]["modseq"]
    out = s.cmd(f"f FETCH 1:* (FLAGS) (CHANGEDSINCE {high})")
    assert out.startswith(b"* 2 FETCH (FLAGS () MODSEQ (")
    assert b"* 1 FETCH" not in out


def test_fetch_bad_item_is_bad():
    s, _ = _box(MESSAGE)
    assert s.cmd("f FETCH 1 (FROB)").startswith(b"f BAD")


def test_an_unexpected_error_in_a_command_answers_no_and_the_session_goes_on():
    s, store = _box(MESSAGE)

    def broken(*args):
        raise RuntimeError("disk on fire")
    store.copy_messages = broken
    assert s.cmd("c COPY 1 Trash") == b"c NO [SERVERBUG] internal error; try again later\r\n"
    assert s.cmd("n NOOP") == b"n OK NOOP completed\r\n"


def test_large_body_is_streamed_and_equals_the_message():
    line = b"y" * 998 + b"\r\n"
    big = b"Subject: big\r\n\r\n" + line * 400          # 400 KB: over STREAM_OVER
    s, store = _box(big, MESSAGE)
    out = s.cmd("f FETCH 1:2 (UID BODY.PEEK[] RFC822.SIZE)")
    head = b"* 1 FETCH (UID 1 RFC822.SIZE %d BODY[] {%d}\r\n" % (len(big), len(big))
    assert out.startswith(head)
    assert out[len(head):len(head) + len(big)] == big
    rest = out[len(head) + len(big):]
    assert rest.startswith(b")\r\n* 2 FETCH (UID 2 BODY[] {%d}\r\n" % len(MESSAGE))
    assert rest.endswith(b"f OK FETCH completed\r\n")


def test_streamed_fetch_waits_for_the_transport_to_drain():
    line = b"y" * 998 + b"\r\n"
    big = b"Subject: big\r\n\r\n" + line * 1000
    s, _ = _box(big, big)
    s.proto._flow.pauseProducing()          # the transport's buffer is full
    s.proto.dataReceived(b"f FETCH 1:2 BODY.PEEK[]\r\n")
    s.clock.advance(0)
    held = len(s.transport.value())
    assert held < 2 * 64 * 1024             # one chunk past the full buffer, no more
    s.proto._flow.resumeProducing()
    s.clock.advance(0)
    assert s.transport.value().endswith(b"f OK FETCH completed\r\n")


def test_search_by_flag_header_and_uid():
    other = b"From: z@example.com\r\nSubject: other\r\n\r\nsecond body\r\n"
    s, store = _box(MESSAGE, other, MESSAGE)
    s.cmd("t STORE 2 +FLAGS (\\Seen)")
    assert s.cmd("a SEARCH UNSEEN") == b"* SEARCH 1 3\r\na OK SEARCH completed\r\n"
    assert s.cmd("b SEARCH SUBJECT other") == b"* SEARCH 2\r\nb OK SEARCH completed\r\n"
    assert s.cmd("c UID SEARCH BODY \"second\"") == \
        b"* SEARCH 2\r\nc OK SEARCH completed\r\n"
    assert s.cmd("d SEARCH CHARSET UTF-8 NOT SEEN 2:*") == \
        b"* SEARCH 3\r\nd OK SEARCH completed\r\n"
    assert s.cmd("e SEARCH CHARSET KOI8-R ALL").startswith(b"e NO [BADCHARSET")
    assert s.cmd("f SEARCH FROB").startswith(b"f BAD")


def test_search_modseq_answers_the_highest():
    s, store = _box(MESSAGE, MESSAGE)
    out = s.cmd("a SEARCH MODSEQ 1")
    high = max(m["modseq"] for m in store.folders["bob@example.com"]["INBOX"].messages)
    assert out == b"* SEARCH 1 2 (MODSEQ %d)\r\na OK SEARCH completed\r\n" % high


def test_list_return_status():
    s, _ = _box(MESSAGE)
    out = s.cmd('l LIST "" "INBOX" RETURN (STATUS (MESSAGES UIDNEXT))')
    assert out == (b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'
                   b'* STATUS "INBOX" (MESSAGES 1 UIDNEXT 2)\r\nl OK LIST completed\r\n')


def test_list_subscribed_selection_marks_subscribed():
    s = Session()
    s.login()
    out = s.cmd('l LIST (SUBSCRIBED) "" "Sent"')
    assert out == b'* LIST (\\HasNoChildren \\Sent \\Subscribed) "/" "Sent"\r\n' \
        b"l OK LIST completed\r\n"


def test_append_over_quota_is_overquota():
    store = MemoryIMAPStore()
    store.quota_octets = 10
    s = Session(store)
    s.login()
    out = s.send(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(MESSAGE), MESSAGE))
    assert out == b"a NO [OVERQUOTA] the quota does not allow it\r\n"


def test_mailbox_names_are_modified_utf7_until_utf8_is_enabled():
    s = Session()
    s.login()
    assert s.cmd("c CREATE &AMQ-rger") == b"c OK CREATE completed\r\n"
    assert "Ärger" in s.store.folders["bob@example.com"]
    assert b'"&AMQ-rger"' in s.cmd('l LIST "" "*"')
    s.cmd("e ENABLE UTF8=ACCEPT")
    assert "Ärger".encode() in s.cmd('l LIST "" "*"')


def test_large_append_streams_into_the_store_as_it_arrives():
    line = b"z" * 998 + b"\r\n"
    big = b"Subject: appended\r\n\r\n" + line * 200            # 200 KB > 64 KiB
    s = Session()
    s.login()
    assert s.cmd("a APPEND Drafts (\\Draft) {%d}" % len(big)) == \
        b"+ Ready for literal data\r\n"
    assert s.send(big[:150_000]) == b""
    assert len(s.proto.reader) == 0                # written on, not held
    out = s.send(big[150_000:] + b"\r\n")
    assert re.match(rb"a OK \[APPENDUID \d+ 1\] APPEND completed", out), out
    stored = s.store.folders["bob@example.com"]["Drafts"].messages[0]
    assert stored["body"] == big and stored["flags"] == {"\\Draft"}


def test_large_append_before_login_is_refused_before_it_is_sent():
    s = Session()
    out = s.cmd("a APPEND INBOX {200000}")
    assert out.startswith(b"a BAD literal too large")
    assert s.cmd("n NOOP") == b"n OK NOOP completed\r\n"


def test_connection_lost_during_a_streamed_append_aborts_it():
    s = Session()
    s.login()
    s.cmd("a APPEND INBOX {200000}")
    s.send(b"x" * 100_000)
    sink = s.proto.reader._sink
    s.proto.connectionLost(None)
    assert sink.append.parts == []                 # the memory store's abort()
    assert s.store.folders["bob@example.com"]["INBOX"].messages == []


def test_qresync_select_tells_vanished_and_changed_flags():
    store = MemoryIMAPStore()
    msgs = [store.add("bob@example.com", MESSAGE) for _ in range(3)]
    box = store.folders["bob@example.com"]["INBOX"]
    since = box.modseq
    store.store_flags([msgs[1]["id"]], frozenset({"\\Flagged"}), "add")
    store.expunge_messages("bob@example.com", "INBOX", [msgs[0]["id"]])
    s = Session(store)
    s.login()
    assert s.cmd("e ENABLE QRESYNC").startswith(b"* ENABLED QRESYNC\r\n")
    out = s.cmd(f"s SELECT INBOX (QRESYNC ({box.validity} {since} 1:3))")
    assert b"* VANISHED (EARLIER) 1\r\n" in out
    assert re.search(rb"\* 1 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", out)
    assert out.endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    # once QRESYNC is on, expunges are told as VANISHED
    s.cmd("t STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert s.cmd("x EXPUNGE") == (b"* VANISHED 2\r\nx OK [HIGHESTMODSEQ %d] EXPUNGE "
                                  b"completed\r\n" % box.modseq)


def test_qresync_select_needs_enable_first():
    s = Session()
    s.login()
    assert s.cmd("s SELECT INBOX (QRESYNC (1 1))").startswith(b"s BAD")


def test_uid_fetch_changedsince_vanished():
    store = MemoryIMAPStore()
    msgs = [store.add("bob@example.com", MESSAGE) for _ in range(3)]
    since = store.folders["bob@example.com"]["INBOX"].modseq
    s = Session(store)
    s.login()
    s.cmd("e ENABLE QRESYNC")
    s.cmd("s SELECT INBOX")
    store.expunge_messages("bob@example.com", "INBOX", [msgs[2]["id"]])
    out = s.cmd(f"f UID FETCH 1:* FLAGS (CHANGEDSINCE {since} VANISHED)")
    assert out.startswith(b"* VANISHED (EARLIER) 3\r\n"), out
    assert out.endswith(b"f OK FETCH completed\r\n")
    assert s.cmd("g FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)").startswith(b"g BAD")


def test_noop_asks_the_store_even_without_a_notification():
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE)
    s = Session(store)
    s.select()
    store.listeners.clear()                    # the notification is late
    store.add("bob@example.com", MESSAGE)
    assert s.cmd("n NOOP") == b"* 2 EXISTS\r\n* 1 RECENT\r\nn OK NOOP completed\r\n"


def test_fetch_meta_of_a_scattered_set_in_chunks(monkeypatch):
    from mailet_mta.imap import selected_commands

    monkeypatch.setattr(selected_commands, "META_ROWS", 2)
    monkeypatch.setattr(selected_commands, "META_FIRST_ROWS", 1)
    s, _ = _box(*[MESSAGE] * 6)
    s.cmd("t STORE 3 +FLAGS (\\Seen)")
    out = s.cmd("f FETCH 1,3:4,6 (FLAGS UID)")
    assert out == (b"* 1 FETCH (FLAGS () UID 1)\r\n* 3 FETCH (FLAGS (\\Seen) UID 3)\r\n"
                   b"* 4 FETCH (FLAGS () UID 4)\r\n* 6 FETCH (FLAGS () UID 6)\r\n"
                   b"f OK FETCH completed\r\n")
    assert s.cmd("g FETCH 5 UID") == b"* 5 FETCH (UID 5)\r\ng OK FETCH completed\r\n"


def test_fetch_meta_waits_for_the_transport_between_chunks(monkeypatch):
    from mailet_mta.imap import fetch, selected_commands

    monkeypatch.setattr(selected_commands, "META_ROWS", 3)
    monkeypatch.setattr(selected_commands, "META_FIRST_ROWS", 2)
    s, _ = _box(*[MESSAGE] * 6)
    render = fetch.render_meta_rows

    calls = []

    def render_and_fill(*args):
        calls.append(1)
        if len(calls) == 1:
            s.proto._flow.pauseProducing()  # the transport's buffer is full
        return render(*args)
    monkeypatch.setattr(fetch, "render_meta_rows", render_and_fill)
    s.proto.dataReceived(b"f FETCH 1:* UID\r\n")
    s.clock.advance(0)
    assert s.transport.value().count(b" FETCH (UID") == 2     # one chunk, no more
    s.proto._flow.resumeProducing()
    s.clock.advance(0)
    out = s.transport.value()
    assert out.count(b" FETCH (UID") == 6 and out.endswith(b"f OK FETCH completed\r\n")
    assert len(calls) == 3                  # 2 rows first, then 3, then the last one


def test_search_of_flags_only_and_keywords():
    s, _ = _box(*[MESSAGE] * 4)
    s.cmd("t STORE 2 +FLAGS (\\Seen work)")
    s.cmd("u STORE 4 +FLAGS (\\Deleted)")
    assert s.cmd("a UID SEARCH UNSEEN") == b"* SEARCH 1 3 4\r\na OK SEARCH completed\r\n"
    assert s.cmd("b SEARCH OR KEYWORD work DELETED") == \
        b"* SEARCH 2 4\r\nb OK SEARCH completed\r\n"
    assert s.cmd("c SEARCH NOT (UNSEEN UNDELETED)") == \
        b"* SEARCH 2 4\r\nc OK SEARCH completed\r\n"


MIXED = (b"Subject: parts\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
         b"--b1\r\nContent-Type: text/plain\r\n\r\none\r\n"
         b"--b1\r\nContent-Type: text/plain\r\n\r\ntwo\r\n"
         b"--b1\r\nContent-Type: text/plain\r\n\r\nthree\r\n--b1--\r\n")


def test_fetch_and_search_use_the_configured_mime_limits():
    from mailet_mta.mail import MimeLimits

    s, _ = _box(MIXED)
    whole = s.cmd("a FETCH 1 BODYSTRUCTURE")
    assert whole.count(b'("text" "plain"') == 3
    assert s.cmd("b SEARCH BODY three") == b"* SEARCH 1\r\nb OK SEARCH completed\r\n"
    s.proto.mime_limits = MimeLimits(max_parts=2, max_depth=100)   # the root and one part
    cut = s.cmd("c FETCH 1 BODYSTRUCTURE")
    assert cut.count(b'("text" "plain"') == 1 and b'"OCTET-STREAM"' in cut.upper()
    assert s.cmd("d SEARCH BODY three") == b"* SEARCH\r\nd OK SEARCH completed\r\n"


def test_binary_unknown_cte_of_one_message_does_not_fail_the_others():
    bad = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
    s, _ = _box(MESSAGE, bad, MESSAGE)
    out = s.cmd("f FETCH 1:3 (UID BINARY.PEEK[1])")
    assert out.startswith(b"* 1 FETCH (UID 1 BINARY[1] ")
    assert b"* 3 FETCH (UID 3 BINARY[1] " in out and b"* 2 FETCH" not in out
    assert out.endswith(b"f NO [UNKNOWN-CTE] 1 message(s) have a part in a "
                        b"Content-Transfer-Encoding that cannot be decoded\r\n")
    assert s.cmd("g FETCH 1 UID") == b"* 1 FETCH (UID 1)\r\ng OK FETCH completed\r\n"


def test_getquotaroot_and_getquota_tell_the_users_quota():
    s, store = _box(b"x" * 3000)
    assert b"QUOTA=RES-STORAGE" in s.cmd("c CAPABILITY")
    assert s.cmd("a GETQUOTAROOT INBOX") == \
        b'* QUOTAROOT "INBOX"\r\na OK GETQUOTAROOT completed\r\n'     # no quota, no root
    assert s.cmd('b GETQUOTA ""').startswith(b"b NO [NONEXISTENT]")
    store.quota_octets = 10 * 1024 * 1024 + 100
    assert s.cmd("c GETQUOTAROOT INBOX") == (
        b'* QUOTAROOT "INBOX" ""\r\n* QUOTA "" (STORAGE 3 10240)\r\n'
        b"c OK GETQUOTAROOT completed\r\n")
    assert s.cmd('d GETQUOTA ""') == \
        b'* QUOTA "" (STORAGE 3 10240)\r\nd OK GETQUOTA completed\r\n'
    assert s.cmd("e GETQUOTA other").startswith(b"e NO [NONEXISTENT]")
    assert s.cmd("f GETQUOTAROOT Nowhere").startswith(b"f NO [NONEXISTENT]")
    assert s.cmd("g GETQUOTAROOT").startswith(b"g BAD")
    assert s.cmd('h SETQUOTA "" (STORAGE 1)').startswith(b"h BAD")


def test_small_whole_message_fetch_is_rendered_in_place_larger_on_a_worker():
    from mailet_mta.imap import selected_commands

    ran = []

    def run(fn, *args):
        ran.append(fn.__name__)
        return _in_place(fn, *args)
    store = MemoryIMAPStore()
    store.add("bob@example.com", MESSAGE)
    large = b"Subject: l\r\n\r\n" + b"z" * (selected_commands.INLINE_OCTETS + 10) + b"\r\n"
    store.add("bob@example.com", large)
    s = Session(store)
    s.factory._run = run
    s.proto.run = run
    s.select()
    ran.clear()
    assert s.cmd("f FETCH 1 BODY.PEEK[]").endswith(b"f OK FETCH completed\r\n")
    assert "_render_batch" not in ran
    assert s.cmd("g FETCH 2 BODY.PEEK[]").endswith(b"g OK FETCH completed\r\n")
    assert s.cmd("h FETCH 1 BODYSTRUCTURE").endswith(b"h OK FETCH completed\r\n")
    assert ran.count("_render_batch") == 2


def test_a_line_that_never_ends_is_answered_bad_and_cut_off_after_a_mebibyte():
    from mailet_mta.imap.protocol import MAX_DISCARDED

    s = Session()
    out = s.send(b"a NOOP " + b"x" * 100_000)
    assert out.startswith(b"a BAD command line too long")
    sent = 100_000
    while sent + 65536 <= MAX_DISCARDED:
        assert s.send(b"x" * 65536) == b""
        sent += 65536
    assert not s.transport.disconnecting
    assert s.send(b"x" * 65536) == b"* BYE the line does not end; closing\r\n"
    assert s.transport.disconnecting
    assert len(s.proto.reader) == 0


def test_an_overlong_line_that_ends_keeps_the_session():
    s = Session()
    out = s.send(b"a NOOP " + b"x" * 500_000 + b"\r\nb NOOP\r\n")
    assert out.startswith(b"a BAD command line too long")
    assert out.endswith(b"b OK NOOP completed\r\n")
    assert not s.transport.disconnecting
