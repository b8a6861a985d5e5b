"""The SMTP client protocol on a StringTransport: replies, pipelining, timeouts, DATA."""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.internet.error import ConnectionAborted
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from mailet_mta.delivery.smtp_client import SMTPClientProtocol, SMTPConnectionLost
from mailet_mta.mail import MessageSource


def connected(timeout=30.0):
    clock = task.Clock()
    proto = SMTPClientProtocol(clock, timeout)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


def collect(deferreds):
    """A list that receives each Deferred's result (or Failure) in order as it fires."""
    out = [None] * len(deferreds)
    for i, d in enumerate(deferreds):
        d.addBoth(lambda value, i=i: out.__setitem__(i, value))
    return out


def test_multiline_reply_is_one_reply_with_every_line():
    proto, _transport, _clock = connected()
    greeting = collect([proto.greeting])
    proto.dataReceived(b"220 mx.test ready\r\n")
    ehlo = collect([proto.command("EHLO me")])
    proto.dataReceived(b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
    assert greeting[0].code == 220
    assert ehlo[0].code == 250 and ehlo[0].lines == ["mx.test", "PIPELINING", "SIZE 100"]


def test_pipelined_commands_are_one_write_and_replies_match_in_order():
    proto, transport, _clock = connected()
    proto.dataReceived(b"220 hi\r\n")
    transport.clear()
    got = collect(proto.send("MAIL FROM:<a@b.test>", "RCPT TO:<c@d.test>",
                             "RCPT TO:<e@f.test>"))
    assert transport.value() == (b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
                                 b"RCPT TO:<e@f.test>\r\n")
    proto.dataReceived(b"250 ok\r\n250 ok\r\n550 5.1.1 no")
    assert [r.code for r in got[:2]] == [250, 250] and got[2] is None
    proto.dataReceived(b" such user\r\n")
    assert got[2].code == 550 and got[2].enhanced == "5.1.1"
    assert str(got[2]) == "550 5.1.1 no such user"


def test_silent_server_times_out_and_fails_the_waiting_commands():
    proto, transport, clock = connected(timeout=10)
    proto.dataReceived(b"220 hi\r\n")
    reply = collect([proto.command("NOOP")])
    clock.advance(9)
    assert reply[0] is None and not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting or transport.disconnected
    proto.connectionLost(Failure(ConnectionAborted()))
    assert isinstance(reply[0].value, SMTPConnectionLost) and reply[0].value.timed_out


def test_body_is_streamed_dot_stuffed_and_terminated():
    proto, transport, _clock = connected()
    proto.dataReceived(b"220 hi\r\n")
    transport.clear()
    final = collect([proto.send_body(MessageSource(b".top\r\nline\r\n.\r\nend"))])
    while transport.producer is not None:
        transport.producer.resumeProducing()
    assert transport.value() == b"..top\r\nline\r\n..\r\nend\r\n.\r\n"
    proto.dataReceived(b"250 2.0.0 queued\r\n")
    assert final[0].code == 250


def test_connection_lost_while_streaming_fails_the_body():
    proto, transport, _clock = connected()
    proto.dataReceived(b"220 hi\r\n")
    final = collect([proto.send_body(MessageSource(b"x" * 200_000))])
    transport.producer.resumeProducing()
    transport.producer.stopProducing()
    assert isinstance(final[0].value, SMTPConnectionLost)



def _gateway_session(ip):
    """An SMTPSession on a StringTransport whose peer is ``ip`` (no packet is sent)."""
    from mailet_mta.delivery.options import DeliveryOptions
    from mailet_mta.delivery.session import SMTPSession

    proto, transport, _clock = connected()
    session = SMTPSession(proto, "gateway.test", ip, 587)
    options = DeliveryOptions.__new__(DeliveryOptions)
    options.__dict__.update(starttls="opportunistic", username="relayuser",
                            password="s3cret", verify_server_identity=False)
    result = collect([defer.ensureDeferred(session._start(options, "me.test", True,
                                                          "s3cret"))])
    proto.dataReceived(b"220 gateway.test ready\r\n")
    proto.dataReceived(b"250-gateway.test\r\n250 AUTH PLAIN LOGIN\r\n")   # no STARTTLS
    return result, transport


def test_gateway_password_is_never_sent_in_clear_to_a_remote_host():
    from mailet_mta.delivery.session import HostFailure

    result, transport = _gateway_session("192.0.2.7")
    transport_text = transport.value()
    assert b"AUTH" not in transport_text and b"s3cret" not in transport_text
    # the session refused before authenticating (it says QUIT and waits for 221)
    assert result[0] is None or isinstance(getattr(result[0], "value", None), HostFailure)


def test_gateway_on_loopback_may_authenticate_without_tls():
    result, transport = _gateway_session("127.0.0.1")
    assert b"AUTH PLAIN" in transport.value()


def _greeted_ehlo():
    proto, transport, clock = connected()
    proto.dataReceived(b"220 hi\r\n")
    return proto, transport, collect([proto.command("EHLO me")])


def test_reply_of_exactly_100_lines_is_taken():
    proto, transport, ehlo = _greeted_ehlo()
    proto.dataReceived(b"250-x\r\n" * 99 + b"250 last\r\n")
    assert ehlo[0].code == 250 and len(ehlo[0].lines) == 100
    assert not transport.disconnecting


def test_reply_of_101_lines_aborts_the_connection():
    proto, transport, ehlo = _greeted_ehlo()
    proto.dataReceived(b"250-x\r\n" * 101)
    assert transport.disconnecting or transport.disconnected
    proto.dataReceived(b"250-x\r\n" * 1000)        # ignored once aborted
    proto.connectionLost(Failure(ConnectionAborted()))
    assert isinstance(ehlo[0].value, SMTPConnectionLost)
    assert "100 lines" in str(ehlo[0].value)


def test_reply_over_64_kib_in_few_lines_aborts_the_connection():
    from mailet_mta.delivery.smtp_client import MAX_REPLY_BYTES

    proto, transport, ehlo = _greeted_ehlo()
    line = b"250-" + b"y" * 8000 + b"\r\n"
    proto.dataReceived(line * (MAX_REPLY_BYTES // len(line)))
    assert not transport.disconnecting
    proto.dataReceived(line)
    assert transport.disconnecting or transport.disconnected
    proto.connectionLost(Failure(ConnectionAborted()))
    assert f"{MAX_REPLY_BYTES} octets" in str(ehlo[0].value)


def test_bytes_after_the_220_to_starttls_abort_before_tls_starts():
    proto, transport, _clock = connected()
    proto.dataReceived(b"220 hi\r\n")
    started = []
    transport.startTLS = started.append
    reply = collect([proto.start_tls(object())])
    proto.dataReceived(b"220 go ahead\r\n250 injected\r\n")
    assert started == [] and reply[0] is None
    assert transport.disconnecting or transport.disconnected
    proto.connectionLost(Failure(ConnectionAborted()))
    assert "injection" in str(reply[0].value)


def test_starttls_switches_before_reading_on_and_keeps_no_plaintext():
    proto, transport, _clock = connected()
    proto.dataReceived(b"220 hi\r\n")
    options = object()
    started = []
    transport.startTLS = started.append
    reply = collect([proto.start_tls(options)])
    proto.dataReceived(b"220 go ahead\r\n")
    assert started == [options] and reply[0].code == 220
    assert proto._buffer == b"" and proto._lines == []


def test_a_command_holding_cr_or_lf_is_refused():
    import pytest

    proto, transport, _clock = connected()
    proto.dataReceived(b"220 hi\r\n")
    transport.clear()
    for bad in ("RCPT TO:<a@b.test>\r\nDATA", "MAIL FROM:<a\r@b.test>"):
        with pytest.raises(ValueError):
            proto.send(bad)
    assert transport.value() == b""
