"""Hypothesis drives the SMTP session with random command sequences and random bytes.

In-process (a StringTransport) so that thousands of steps run in seconds. A model of
the session (greeted? in a transaction? how many recipients?) predicts the answer to
each well-formed command; after random input the model re-reads the session state.
Invariants after every step: each reply is a well-formed RFC 5321 reply, no command
ever cost a ``451 Internal error`` (an exception in a handler), the input buffer stays
bounded, and a closed session stays closed.

MAILET_MTA_FUZZ_EXAMPLES (default 60) sets the number of sequences.
"""

from __future__ import annotations

import base64
import os
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.fuzz.replies import FUZZ_SETTINGS, smtp_replies
from tests.support.examples import examples
from tests.support.smtp_backend import FakeSession

EXAMPLES = int(os.environ.get("MAILET_MTA_FUZZ_EXAMPLES", examples(40)))
STEPS = int(os.environ.get("MAILET_MTA_FUZZ_STEPS", "40"))

VERBS = ["HELO", "EHLO", "MAIL FROM:", "RCPT TO:", "DATA", "BDAT", "RSET", "NOOP",
         "QUIT", "VRFY", "EXPN", "HELP", "STARTTLS", "AUTH", "AUTH PLAIN", "AUTH LOGIN",
         "MAIL", "RCPT", "XCLIENT", "TURN", "mail from:", "rcpt to:", ""]
ARGS = st.one_of(
    st.sampled_from(["<>", "<a@example.com>", "<alice@example.com>", "<x@remote.net>",
                     "<@a,@b:c@d>", "<a%b@example.com>", "<\"a@b\"@example.com>",
                     "<alice@[198.51.100.25]>", "<a!b@example.com>", "SIZE=99999999999",
                     "<a@b> SIZE=", "<a@b> BODY=9BIT", "<a@b> SMTPUTF8=x", "=", "*",
                     "AHVzZXIAcGFzcw==", "10 LAST", "0", "-1", "LAST"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
LOCAL_RCPTS = ["alice@example.com", "bob@example.com", "info@example.com"]


class SMTPSessionMachine(RuleBasedStateMachine):
    """One SMTP session per example; rules are client actions."""

    def __init__(self):
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="smtpfuzz-")
        self.s = FakeSession(self._tmp.name, auth_required="true", max_recipients=5,
                             max_message_size=2000)
        self.replies = []
        self.closed = False
        self.sync()

    def teardown(self):
        self.s.proto.connectionLost(None)
        self._tmp.cleanup()

    # -- plumbing ------------------------------------------------------------------
    def feed(self, data: bytes) -> list[tuple[int, str]]:
        self.s.proto.dataReceived(data)
        raw = self.s.transport.value()
        self.s.transport.clear()
        self.replies = smtp_replies(raw)
        if self.closed:
            assert raw == b"", "a closed session wrote more output"
        self.closed = self.closed or self.s.transport.disconnecting
        return self.replies

    def codes(self, data: bytes) -> list[int]:
        return [c for c, _ in self.feed(data)]

    def sync(self):
        p = self.s.proto
        self.helo = p.session.helo is not None
        self.esmtp = p.session.esmtp
        self.in_tx = p.envelope is not None
        self.rcpts = len(p.envelope.recipients) if p.envelope else 0
        self.authed = p.session.auth_user is not None
        self.in_body = p._reader is not None or p._auth is not None

    def open(self) -> bool:
        return not self.closed and not self.in_body

    # -- well-formed commands with predicted answers ---------------------------------
    @precondition(open)
    @rule(name=st.sampled_from(["client.example.net", "[192.0.2.1]", "x"]))
    def ehlo(self, name):
        assert self.codes(f"EHLO {name}\r\n".encode()) == [250]
        self.sync()
        assert self.helo and not self.in_tx

    @precondition(open)
    @rule(sender=st.sampled_from(["", "x@remote.net", "carol@example.org.test"]))
    def mail(self, sender):
        codes = self.codes(f"MAIL FROM:<{sender}>\r\n".encode())
        if self.in_tx or not self.helo:
            assert codes == [503]
        else:
            assert codes == [250]
        self.sync()

    @precondition(open)
    @rule(rcpt=st.sampled_from(LOCAL_RCPTS))
    def rcpt_local(self, rcpt):
        codes = self.codes(f"RCPT TO:<{rcpt}>\r\n".encode())
        if not self.in_tx:
            assert codes == [503]
        else:
            assert codes[0] in (250, 452)
        self.sync()

    @precondition(open)
    @rule()
    def rcpt_remote_is_never_relayed_unauthenticated(self):
        codes = self.codes(b"RCPT TO:<victim@remote.example>\r\n")
        if not self.in_tx:
            assert codes == [503]
        elif not self.authed:
            assert codes[0] in (530, 550), codes
        self.sync()

    @precondition(open)
    @rule(body=st.binary(max_size=300))
    def data(self, body):
        codes = self.codes(b"DATA\r\n")
        if not self.in_tx:
            assert codes == [503]
            return self.sync()
        if self.rcpts == 0:
            assert codes == [554]
            return self.sync()
        assert codes == [354]
        before = len(self.s.backend.accepted)
        body = body.replace(b"\r", b"").replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
        codes = self.codes(b"Subject: fuzz\r\n\r\n" + body + b"\r\n.\r\n")
        assert codes and codes[0] in (250, 550, 552), codes
        assert (len(self.s.backend.accepted) == before + 1) == (codes[0] == 250)
        self.sync()
        assert not self.in_tx and not self.in_body

    @precondition(open)
    @rule()
    def rset(self):
        assert self.codes(b"RSET\r\n") == [250]
        self.sync()
        assert not self.in_tx

    @precondition(open)
    @rule(password=st.sampled_from(["secret", "wrong", ""]))
    def auth_plain(self, password):
        token = base64.b64encode(f"\0alice\0{password}".encode()).decode()
        codes = self.codes(f"AUTH PLAIN {token}\r\n".encode())
        if self.authed or self.in_tx or not self.esmtp:   # AUTH needs EHLO first
            assert codes == [503]
        elif password == "secret":
            assert codes == [235]
        else:
            assert codes[0] in (501, 535)
        self.sync()

    # -- random input ------------------------------------------------------------------
    @precondition(lambda self: not self.closed)
    @rule(verb=st.sampled_from(VERBS), arg=ARGS)
    def random_command(self, verb, arg):
        line = f"{verb} {arg}" if verb and not verb.endswith(":") else f"{verb}{arg}"
        self.feed(line.encode("utf-8", "surrogatepass") + b"\r\n")
        self.sync()

    @precondition(lambda self: not self.closed)
    @rule(data=st.binary(max_size=600))
    def random_bytes(self, data):
        self.feed(data + b"\r\n")     # a partial line would prefix the next command
        self.sync()

    @precondition(lambda self: not self.closed)
    @rule(size=st.integers(2049, 40000))
    def long_line(self, size):
        codes = self.codes(b"NOOP " + b"A" * size + b"\r\n")
        if not self.in_body:
            assert codes and codes[-1] == 500
        self.sync()

    @precondition(lambda self: not self.closed and self.in_body)
    @rule()
    def finish_body(self):
        """Leave a body or SASL exchange the random input opened."""
        p = self.s.proto
        if p._auth is not None:
            self.feed(b"*\r\n")
        elif hasattr(p._reader, "remaining"):
            self.feed(b"x" * p._reader.remaining)
        else:
            self.feed(b"\r\n.\r\n")
        self.sync()

    @precondition(lambda self: self.closed)
    @rule(data=st.binary(min_size=1, max_size=100))
    def input_after_close_is_ignored(self, data):
        assert self.feed(data + b"\r\n") == []

    # -- invariants ----------------------------------------------------------------
    @invariant()
    def no_internal_error(self):
        assert all(code != 451 for code, _ in self.replies), self.replies

    @invariant()
    def input_buffer_is_bounded(self):
        assert len(self.s.proto._buf) <= self.s.proto.MAX_AUTH_LINE + 2

    @invariant()
    def transaction_state_is_consistent(self):
        p = self.s.proto
        if p.envelope is not None:
            assert len(p.envelope.recipients) <= 5
        if p.session.helo is None:
            assert p.envelope is None or not p.config.helo_required


SMTPSessionMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, **FUZZ_SETTINGS)
test_smtp_session_survives_random_command_sequences = SMTPSessionMachine.TestCase
