"""Hypothesis drives the POP3 session with random command sequences and random bytes.

A model (state, which messages are marked deleted) predicts the answer of each
well-formed command (RFC 1939); random input must leave the session answering: after
it, a NOOP in a known state still gets its ``+OK``/``-ERR``. Invariants: output is CRLF
lines starting with a status indicator or inside a dot-terminated listing, no
``[SYS/TEMP] internal error`` ever, the input buffer and the command queue bounded,
and QUIT in TRANSACTION removes exactly the messages the model marked deleted.

MAILET_MTA_FUZZ_EXAMPLES (default 60) sets the number of sequences.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet import task
from twisted.internet.testing import StringTransport

from mailet_mta.config.model import POP3ServerConfig
from mailet_mta.pop3.factory import POP3ServerFactory
from mailet_mta.pop3.protocol import MAX_LINE
from tests.fuzz.replies import FUZZ_SETTINGS
from tests.support.examples import examples
from tests.unit.pop3_memory_backend import MemoryBackend

EXAMPLES = int(os.environ.get("MAILET_MTA_FUZZ_EXAMPLES", examples(40)))
STEPS = int(os.environ.get("MAILET_MTA_FUZZ_STEPS", "40"))
USER, PASSWORD = "bob@example.com", "secret"
BODIES = [b"Subject: one\r\n\r\nhello\r\n", b"Subject: two\r\n\r\n.dot\r\nworld\r\n",
          b"Subject: three\r\n\r\n" + b"x" * 2000 + b"\r\n"]
VERBS = ["USER", "PASS", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "NOOP", "RSET",
         "QUIT", "CAPA", "STLS", "AUTH", "AUTH PLAIN", "APOP", "LAST", "XTND", "list",
         ""]
ARGS = st.one_of(st.sampled_from(["1", "0", "-1", "2 0", "1 99999999999999999999",
                                  "99999999999999999999", "٣", "1 ٣", USER, "*", "="]),
                 st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))


class POP3SessionMachine(RuleBasedStateMachine):
    """One POP3 session on an in-memory maildrop of three messages."""

    def __init__(self):
        super().__init__()
        self.backend = MemoryBackend()
        for body in BODIES:
            self.backend.add(USER, body)
        self.clock = task.Clock()
        factory = POP3ServerFactory(POP3ServerConfig(connection_timeout=60,
                                                     auth_failure_delay=0),
                                    self.backend, None, self.clock)
        self.proto = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.out = self.take()
        self.state = "AUTHORIZATION"
        self.deleted: set[int] = set()
        self.closed = False
        self.quit_in_transaction = False

    def teardown(self):
        if not self.closed:
            self.proto.connectionLost(None)

    # -- plumbing ------------------------------------------------------------------
    def take(self) -> bytes:
        self.clock.advance(0)   # the turns after COMMANDS_PER_TURN pipelined commands
        out = self.transport.value()
        self.transport.clear()
        return out

    def send(self, data: bytes) -> bytes:
        self.proto.dataReceived(data)
        self.out = self.take()
        if self.closed:
            assert self.out == b""
        self.closed = self.closed or self.transport.disconnecting
        return self.out

    def cmd(self, line: str) -> bytes:
        return self.send(line.encode() + b"\r\n")

    def sync(self):
        self.state = self.proto.state
        if self.state == "TRANSACTION":
            self.deleted = set(self.proto._deleted)

    def live(self) -> bool:
        return not self.closed and self.proto._continuation is None

    def authorization(self) -> bool:
        return self.live() and self.state == "AUTHORIZATION"

    def transaction(self) -> bool:
        return self.live() and self.state == "TRANSACTION"

    # -- AUTHORIZATION -------------------------------------------------------------
    @precondition(authorization)
    @rule(password=st.sampled_from([PASSWORD, "wrong", ""]))
    def login(self, password):
        assert self.cmd(f"USER {USER}").startswith(b"+OK")
        reply = self.cmd(f"PASS {password}")
        if password == PASSWORD:
            assert reply.startswith(b"+OK"), reply
            self.state, self.deleted = "TRANSACTION", set()
        else:
            assert reply.startswith(b"-ERR [AUTH]"), reply
        self.sync()

    @precondition(authorization)
    @rule(verb=st.sampled_from(["STAT", "LIST", "RETR 1", "DELE 1", "RSET", "UIDL"]))
    def transaction_command_before_login_is_refused(self, verb):
        assert self.cmd(verb).startswith(b"-ERR")

    # -- TRANSACTION ----------------------------------------------------------------
    @precondition(transaction)
    @rule()
    def stat(self):
        alive = [i for i in range(len(BODIES)) if i not in self.deleted]
        assert self.cmd("STAT") == b"+OK %d %d\r\n" % (
            len(alive), sum(len(BODIES[i]) for i in alive))

    @precondition(transaction)
    @rule(n=st.integers(0, 4))
    def retr(self, n):
        reply = self.cmd(f"RETR {n}")
        if 1 <= n <= len(BODIES) and n - 1 not in self.deleted:
            assert reply.startswith(b"+OK") and reply.endswith(b"\r\n.\r\n")
            body = reply.split(b"\r\n", 1)[1][:-3]
            assert body.replace(b"\r\n..", b"\r\n.") == BODIES[n - 1]
        else:
            assert reply.startswith(b"-ERR")

    @precondition(transaction)
    @rule(n=st.integers(0, 4))
    def dele(self, n):
        reply = self.cmd(f"DELE {n}")
        ok = 1 <= n <= len(BODIES) and n - 1 not in self.deleted
        assert reply.startswith(b"+OK" if ok else b"-ERR"), reply
        if ok:
            self.deleted.add(n - 1)

    @precondition(transaction)
    @rule()
    def rset(self):
        assert self.cmd("RSET").startswith(b"+OK")
        self.deleted = set()

    @precondition(transaction)
    @rule(verb=st.sampled_from(["LIST", "UIDL", "CAPA"]))
    def listing(self, verb):
        reply = self.cmd(verb)
        assert reply.startswith(b"+OK") and reply.endswith(b"\r\n.\r\n")
        if verb != "CAPA":
            assert reply.count(b"\r\n") == 2 + len(BODIES) - len(self.deleted)

    @precondition(transaction)
    @rule()
    def quit_removes_exactly_the_marked_messages(self):
        ids = [mid for i, (mid, _b, _p) in enumerate(self.backend.boxes[USER])
               if i in self.deleted]
        assert self.cmd("QUIT").startswith(b"+OK")
        assert sorted(self.backend.deleted) == sorted(ids)
        assert self.closed

    # -- random input ------------------------------------------------------------------
    @precondition(lambda self: not self.closed)
    @rule(verb=st.sampled_from(VERBS), arg=ARGS)
    def random_command(self, verb, arg):
        if verb == "QUIT":
            return
        line = f"{verb} {arg}".encode("utf-8", "surrogatepass").replace(b"\n", b" ")
        self.send(line + b"\r\n")
        self.sync()
        if self.live():
            assert self.cmd("NOOP").startswith(b"+OK" if self.state == "TRANSACTION"
                                               else b"-ERR")

    @precondition(lambda self: not self.closed)
    @rule(data=st.binary(max_size=600))
    def random_bytes(self, data):
        self.send(data.replace(b"QUIT", b"quiz") + b"\r\n")
        self.sync()

    @precondition(lambda self: not self.closed)
    @rule(size=st.integers(MAX_LINE + 1, MAX_LINE * 4))
    def long_line(self, size):
        self.send(b"NOOP " + b"A" * size + b"\r\n")
        self.sync()

    @precondition(lambda self: not self.closed and self.proto._continuation is not None)
    @rule()
    def cancel_sasl(self):
        assert self.cmd("*").startswith(b"-ERR")
        self.sync()

    @precondition(lambda self: self.closed)
    @rule(data=st.binary(min_size=1, max_size=100))
    def input_after_close_is_ignored(self, data):
        assert self.send(data + b"\r\n") == b""

    # -- invariants ----------------------------------------------------------------
    @invariant()
    def replies_are_status_lines_or_listings(self):
        out = self.out
        assert out == b"" or out.endswith(b"\r\n")
        assert out.count(b"\r") == out.count(b"\r\n")
        assert b"internal error" not in out
        if out and not out.startswith(b"+OK") and not out.startswith(b"-ERR"):
            assert out == b"+ \r\n", out[:100]

    @invariant()
    def buffers_are_bounded(self):
        assert len(self.proto._buffer) <= MAX_LINE + 1
        assert self.proto._turn is None        # every turn of pipelined commands ran


POP3SessionMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, **FUZZ_SETTINGS)
test_pop3_session_survives_random_command_sequences = POP3SessionMachine.TestCase
