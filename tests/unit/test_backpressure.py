"""Back-pressure in the SMTP and POP3 sessions, driven through StringTransport.

The sessions register a streaming producer with their transport; these tests play the
transport's part (pause when its outgoing buffer is full, resume when it drained) and
check that a session then handles no command, stops reading, streams RETR no faster
than the transport drains, and is aborted at the idle timeout.
"""

from __future__ import annotations

import yaml
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from mailet_mta.config import load_config_text
from mailet_mta.config.model import POP3ServerConfig
from mailet_mta.flow.backpressure import COMMANDS_PER_TURN
from mailet_mta.pop3.factory import POP3ServerFactory
from mailet_mta.pop3.streaming import CHUNK
from tests.support.smtp_backend import FakeSession
from tests.unit.pop3_memory_backend import MemoryBackend

USER, PASSWORD = "bob@example.com", "secret"


class BoundedTransport(StringTransport):
    """Pauses its producer when more than ``bound`` octets wait, as Twisted's
    ``FileDescriptor`` does; :meth:`drain` plays the peer reading them."""

    bound = 65536

    def write(self, data):
        super().write(data)
        if self.producer is not None and len(self.value()) > self.bound:
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        out = self.value()
        self.clear()
        if self.producer is not None:
            self.producer.resumeProducing()
        return out


def smtp_session(tmp_path, **config) -> FakeSession:
    s = FakeSession(tmp_path, **config)
    s.ehlo()
    return s


class POP3Session:
    def __init__(self, backend=None, **config):
        self.clock = task.Clock()
        self.backend = backend or MemoryBackend()
        config.setdefault("connection_timeout", 60)
        self.factory = POP3ServerFactory(POP3ServerConfig(auth_failure_delay=0, **config),
                                         self.backend, None, self.clock)
        self.proto = self.factory.buildProtocol(None)
        self.transport = BoundedTransport()
        self.proto.makeConnection(self.transport)
        assert self.take().startswith(b"+OK")

    def take(self) -> bytes:
        out = self.transport.value()
        self.transport.clear()
        return out

    def send(self, data: bytes) -> bytes:
        self.proto.dataReceived(data)
        return self.take()


# -- SMTP -------------------------------------------------------------------------------
def test_smtp_handles_at_most_commands_per_turn_then_yields_to_the_reactor(tmp_path):
    s = smtp_session(tmp_path)
    s.proto.dataReceived(b"NOOP\r\n" * 100)
    assert s.take() == ["250 2.0.0 Ok"] * COMMANDS_PER_TURN
    assert s.transport.producerState == "paused"          # the rest waits unread
    s.clock.advance(0)
    assert s.take() == ["250 2.0.0 Ok"] * (100 - COMMANDS_PER_TURN)
    assert s.transport.producerState == "producing"


def test_smtp_stops_reading_while_its_replies_wait_in_the_transport(tmp_path):
    s = smtp_session(tmp_path)
    s.transport.producer.pauseProducing()         # the outgoing buffer is full
    assert s.transport.producerState == "producing"  # nothing held: a TLS handshake reads
    assert s.send(b"NOOP\r\nNOOP\r\n") == []
    assert s.transport.producerState == "paused"
    s.transport.producer.resumeProducing()        # it drained
    assert s.take() == ["250 2.0.0 Ok", "250 2.0.0 Ok"]
    assert s.transport.producerState == "producing"


def test_smtp_idle_timeout_aborts_a_client_that_does_not_read(tmp_path):
    s = smtp_session(tmp_path, connection_timeout=30)
    s.transport.producer.pauseProducing()
    s.send(b"EHLO again.example\r\n")
    s.clock.advance(31)
    assert s.transport.disconnected and s.take() == []


def test_smtp_connection_that_does_not_close_after_the_421_is_aborted_later(tmp_path):
    s = smtp_session(tmp_path, connection_timeout=30)
    s.clock.advance(31)
    assert s.take() == ["421 4.4.2 mx.example.com Error: timeout exceeded"]
    assert s.transport.disconnecting and not s.transport.disconnected
    assert s.transport.producer is None           # a producer would keep it open
    s.clock.advance(31)
    assert s.transport.disconnected and s.take() == []


class SendingTransport(BoundedTransport):
    """Like a TCP connection: a write only buffers, ``doWrite`` (what the reactor calls
    when it polls the socket) sends what waits to the peer (``sent``)."""

    def __init__(self):
        super().__init__()
        self.sent = b""

    def doWrite(self):
        self.sent += self.value()
        self.clear()


def test_smtp_replies_are_sent_at_once_unless_the_transport_is_over_its_bound(tmp_path):
    s = smtp_session(tmp_path)
    proto = s.factory.buildProtocol(s.peer)
    proto.callLater = s.clock.callLater
    transport = SendingTransport()
    proto.makeConnection(transport)
    assert transport.sent.startswith(b"220 ") and transport.value() == b""
    proto.dataReceived(b"EHLO client.example.net\r\nNOOP\r\n")
    assert transport.sent.endswith(b"250 2.0.0 Ok\r\n") and transport.value() == b""
    transport.bound = 10                          # the next reply fills the buffer
    proto.dataReceived(b"NOOP\r\n")
    assert transport.value() == b"250 2.0.0 Ok\r\n"    # left for the reactor's poll
    assert transport.sent.count(b"250 2.0.0 Ok") == 1


# -- POP3 -------------------------------------------------------------------------------
def test_pop3_handles_at_most_commands_per_turn_then_yields_to_the_reactor():
    s = POP3Session()
    out = s.send(b"CAPA\r\n" * 100)
    assert out.count(b"+OK capability list follows") == COMMANDS_PER_TURN
    assert s.transport.producerState == "paused"
    s.clock.advance(0)
    assert s.take().count(b"+OK capability list follows") == 100 - COMMANDS_PER_TURN
    assert s.transport.producerState == "producing"


def test_pop3_stops_reading_while_its_replies_wait_in_the_transport():
    s = POP3Session()
    s.transport.producer.pauseProducing()
    assert s.send(b"CAPA\r\nCAPA\r\n") == b""
    assert s.transport.producerState == "paused"
    s.transport.producer.resumeProducing()
    assert s.take().count(b"+OK capability list follows") == 2
    assert s.transport.producerState == "producing"


def test_pop3_retr_writes_no_faster_than_the_transport_drains():
    body = b"Subject: big\r\n\r\n" + b".line that starts with a dot\r\n" * 10_000
    backend = MemoryBackend()
    backend.add(USER, body)
    s = POP3Session(backend)
    s.send(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
    s.proto.dataReceived(b"RETR 1\r\nSTAT\r\n")
    out, drains = b"", 0
    while not out.endswith(b"\r\n.\r\n+OK 1 %d\r\n" % len(body)) and drains < 100:
        assert len(s.transport.value()) <= 2 * CHUNK + 64   # status + one chunk ahead
        out += s.transport.drain()
        drains += 1
    assert drains >= len(body) // CHUNK
    stuffed = body.replace(b"\r\n.", b"\r\n..")
    assert out == b"+OK %d octets\r\n" % len(body) + stuffed + b".\r\n" \
        + b"+OK 1 %d\r\n" % len(body)


def test_pop3_idle_timeout_aborts_a_client_that_does_not_read():
    s = POP3Session()
    s.transport.producer.pauseProducing()
    s.send(b"CAPA\r\n")
    s.clock.advance(61)
    assert s.transport.disconnected and s.take() == b""


def test_pop3_connection_that_does_not_close_after_the_err_is_aborted_later():
    s = POP3Session()
    s.clock.advance(61)
    assert s.take() == b"-ERR idle timeout, closing the connection\r\n"
    assert s.transport.disconnecting and not s.transport.disconnected
    s.clock.advance(61)
    assert s.transport.disconnected and s.take() == b""


def test_pop3_connections_beyond_the_per_ip_limit_get_sys_temp():
    factory = POP3ServerFactory(POP3ServerConfig(connection_limit_per_ip=2),
                                MemoryBackend(), None, task.Clock())

    def connect(ip):
        addr = IPv4Address("TCP", ip, 40000)
        proto, transport = factory.buildProtocol(addr), StringTransport(peerAddress=addr)
        proto.makeConnection(transport)
        return proto, transport

    first, second, refused = (connect("192.0.2.1") for _ in range(3))
    assert first[1].value().startswith(b"+OK") and second[1].value().startswith(b"+OK")
    assert refused[1].value() == (b"-ERR [SYS/TEMP] too many connections from 192.0.2.1; "
                                  b"try again later\r\n")
    assert refused[1].disconnecting
    refused[0].connectionLost(None)                   # frees no slot it never had
    assert connect("192.0.2.2")[1].value().startswith(b"+OK")
    first[0].connectionLost(None)
    assert connect("192.0.2.1")[1].value().startswith(b"+OK")
    assert connect("192.0.2.1")[1].value().startswith(b"-ERR [SYS/TEMP]")


def test_pop3_connection_limit_per_ip_has_the_smtp_key_names_in_yaml_and_xml():
    pipeline = {"processors": {"root": [{"match": "All", "class": "Null"}],
                               "error": [{"match": "All", "class": "Null"}]}}
    text = yaml.safe_dump({"pop3servers": [{"listen": "tcp:110",
                                            "connectionLimitPerIP": 7}],
                           "spoolmanager": pipeline})
    assert load_config_text(text, "yaml", "t.yaml").pop3servers[0] \
        .connection_limit_per_ip == 7
    xml = ("<config><pop3server><port>110</port><connectionLimitPerIP>3"
           "</connectionLimitPerIP></pop3server><spoolmanager>"
           '<processor name="root"><mailet match="All" class="Null"/></processor>'
           '<processor name="error"><mailet match="All" class="Null"/></processor>'
           "</spoolmanager></config>")
    assert load_config_text(xml, "xml", "t.xml").pop3servers[0].connection_limit_per_ip == 3
