"""Hypothesis drives the IMAP session with random command sequences and random bytes.

A model (state, which messages exist and which are flagged \\Deleted) predicts the
tagged answer of well-formed commands; random input (bad syntax, literals, huge
numbers, commands in the wrong state) must leave the session answering: a NOOP
afterwards still gets its tagged OK. Invariants: every output line ends in CRLF,
no ``[SERVERBUG]`` ever, the reader's buffer stays bounded, and EXPUNGE removes
exactly the messages the model flagged \\Deleted.

MAILET_MTA_FUZZ_EXAMPLES (default 40) sets the number of sequences.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from mailet_mta.config.model import IMAPServerConfig
from mailet_mta.imap.factory import IMAPServerFactory
from tests.fuzz.replies import FUZZ_SETTINGS
from tests.support.examples import examples
from tests.unit.imap_memory_store import MemoryIMAPStore

EXAMPLES = int(os.environ.get("MAILET_MTA_FUZZ_EXAMPLES", examples(40)))
STEPS = int(os.environ.get("MAILET_MTA_FUZZ_STEPS", "40"))
USER, PASSWORD = "bob@example.com", "secret"
BODIES = [b"Subject: one\r\n\r\nhello\r\n", b"Subject: two\r\nFrom: a@b\r\n\r\nworld\r\n",
          b"Subject: three\r\n\r\n" + b"x" * 2000 + b"\r\n"]
VERBS = ["CAPABILITY", "NOOP", "LOGIN", "AUTHENTICATE", "SELECT", "EXAMINE", "CREATE",
         "DELETE", "RENAME", "SUBSCRIBE", "LIST", "LSUB", "STATUS", "APPEND", "CHECK",
         "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID",
         "ENABLE", "ID", "NAMESPACE", "FROB", ""]
ARGS = st.one_of(
    st.sampled_from(["1", "1:*", "*", "0", "4294967296", "INBOX", '""', '"*"', "(FLAGS)",
                     "(\\Seen)", "+FLAGS", "BODY[]", "BODY[HEADER.FIELDS (FROM)]<0.5>",
                     "{3+}\r\nabc", "{2}", "(((", ")", "~{1+}\r\nx", "NIL", "FETCH 1 UID",
                     "(UNCHANGEDSINCE 1)", "\\Deleted", "Trash", "x/y/z"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
            max_size=40))


def _in_place(fn, *args):
    return defer.maybeDeferred(fn, *args)


class IMAPSessionMachine(RuleBasedStateMachine):
    """One IMAP session over an in-memory store with three messages in INBOX."""

    def __init__(self):
        super().__init__()
        self.store = MemoryIMAPStore()
        for body in BODIES:
            self.store.add(USER, body)
        self.clock = task.Clock()
        config = IMAPServerConfig(idle_keepalive=0, max_message_size=100_000)
        factory = IMAPServerFactory(config, self.store,
                                    None, self.clock, run=_in_place)
        self.proto = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.out = self.take()
        self.state = "not authenticated"
        self.deleted: set[int] = set()       # UIDs flagged \Deleted by this session
        self.closed = False
        self.n = 0

    def teardown(self):
        if not self.closed:
            self.proto.connectionLost(None)

    def take(self) -> bytes:
        self.clock.advance(0)
        out = self.transport.value()
        self.transport.clear()
        return out

    def send(self, data: bytes) -> bytes:
        self.proto.dataReceived(data)
        self.out = self.take()
        self.closed = self.closed or self.transport.disconnecting
        return self.out

    def tag(self) -> str:
        """A new tag, once whatever random input left half sent is finished."""
        self.resync()
        self.n += 1
        return f"t{self.n}"

    def resync(self) -> None:
        for _ in range(3):
            if self.closed:
                return
            if self.proto.reader.reading_literal:
                self.send(b"x" * self.proto.reader._need)
            elif self.proto._line_handler is not None:
                self.send(b"*\r\n")
            else:
                self.send(b"\r\n")
                break
        self.sync_state()

    def sync_state(self):
        self.state = self.proto.state

    # -- well-formed commands with predicted answers -----------------------------------
    @precondition(lambda self: not self.closed and self.state == "not authenticated")
    @rule()
    def login(self):
        tag = self.tag()
        if self.closed or self.proto.state != "not authenticated":
            return
        out = self.send(f"{tag} LOGIN {USER} {PASSWORD}\r\n".encode())
        assert f"{tag} OK".encode() in out
        self.sync_state()

    @precondition(lambda self: not self.closed and self.state in ("authenticated", "selected"))
    @rule()
    def select(self):
        tag = self.tag()
        if self.closed or self.proto.state not in ("authenticated", "selected"):
            return
        out = self.send(f"{tag} SELECT INBOX\r\n".encode())
        assert f"{tag} OK [READ-WRITE]".encode() in out
        count = len(self.store.folders[USER]["INBOX"].messages)
        assert b"* %d EXISTS\r\n" % count in out
        self.sync_state()

    @precondition(lambda self: not self.closed and self.state == "selected")
    @rule(number=st.integers(min_value=1, max_value=3))
    def flag_deleted(self, number):
        msgs = self.store.folders[USER]["INBOX"].messages
        tag = self.tag()
        if self._not_selected():
            return
        out = self.send(f"{tag} STORE {number} +FLAGS (\\Deleted)\r\n".encode())
        if number > len(self.proto.selected):
            assert f"{tag} BAD".encode() in out
            return
        assert f"{tag} OK".encode() in out
        uid = self.proto.selected.uids[number - 1]
        assert any(m["uid"] == uid and "\\Deleted" in m["flags"] for m in msgs)

    @precondition(lambda self: not self.closed and self.state == "selected")
    @rule()
    def expunge(self):
        box = self.store.folders[USER]["INBOX"]
        tag = self.tag()
        if self._not_selected():
            return
        doomed = {m["uid"] for m in box.messages if "\\Deleted" in m["flags"]}
        out = self.send(f"{tag} EXPUNGE\r\n".encode())
        assert f"{tag} OK".encode() in out
        assert out.count(b" EXPUNGE\r\n") == len(doomed)
        assert not {m["uid"] for m in box.messages} & doomed
        assert len(self.proto.selected) == len(box.messages)

    @precondition(lambda self: not self.closed and self.state == "selected")
    @rule()
    def fetch_all(self):
        tag = self.tag()
        if self._not_selected():
            return
        out = self.send(f"{tag} FETCH 1:* (UID FLAGS BODY.PEEK[HEADER])\r\n".encode())
        if len(self.proto.selected):
            assert f"{tag} OK FETCH completed".encode() in out
            assert out.count(b" FETCH (") == len(self.proto.selected)

    @precondition(lambda self: not self.closed)
    @rule(verb=st.sampled_from(VERBS), args=st.lists(ARGS, max_size=4))
    def random_command(self, verb, args):
        tag = self.tag()
        line = " ".join([tag, verb, *args]).encode("utf-8")
        if "LOGOUT" in verb:
            return
        self.send(line + b"\r\n")
        self.sync_state()

    @precondition(lambda self: not self.closed)
    @rule(data=st.binary(max_size=200))
    def random_bytes(self, data):
        self.send(data.replace(b"LOGOUT", b"x").replace(b"IDLE", b"x")
                  .replace(b"STARTTLS", b"x"))
        self.sync_state()

    @precondition(lambda self: not self.closed)
    @rule()
    def still_answers(self):
        tag = self.tag()
        out = self.send(f"{tag} NOOP\r\n".encode())
        if not self.closed:
            assert f"{tag} OK NOOP completed".encode() in out or \
                f"{tag} BAD".encode() in out, out
        self.sync_state()

    def _not_selected(self) -> bool:
        return self.closed or self.proto.state != "selected" or \
            self.proto.selected is None or self.proto.selected.name != "INBOX"

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def no_internal_error(self):
        assert b"SERVERBUG" not in self.out

    @invariant()
    def output_is_crlf_terminated(self):
        assert not self.out or self.out.endswith(b"\r\n")

    @invariant()
    def buffer_is_bounded(self):
        assert len(self.proto.reader) <= 64 * 1024 + 1024


IMAPSessionMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, **FUZZ_SETTINGS)
TestIMAPSessionMachine = IMAPSessionMachine.TestCase
