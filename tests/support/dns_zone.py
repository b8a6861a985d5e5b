"""A DNS server on 127.0.0.1 that answers from a zone built in the test.

``ZoneServer`` serves A, AAAA, MX, TXT and PTR records over UDP with
``twisted.names`` encoding the messages. It runs on its own thread with a plain
socket, so the same zone answers a resolver on the test's reactor and real server
processes started by ``tests.support.server`` (point their ``dns.servers`` at
``zone.address``). Names absent from the zone answer NXDOMAIN; a name in the zone
without the asked type answers NOERROR with no records.

TLSA records (``("TLSA", (usage, selector, mtype, data_bytes))``) are served too.
With ``authentic = True`` every answer carries the AD bit, as a DNSSEC-validating
resolver's would; names in ``servfail`` answer SERVFAIL.
"""

from __future__ import annotations

import socket
import threading

from twisted.names import dns

TLSA = 52
_TYPES = {"A": dns.A, "AAAA": dns.AAAA, "MX": dns.MX, "TXT": dns.TXT, "PTR": dns.PTR,
          "TLSA": TLSA}


def _payload(rrtype: str, value):
    if rrtype == "A":
        return dns.Record_A(value)
    if rrtype == "AAAA":
        return dns.Record_AAAA(value)
    if rrtype == "MX":
        preference, host = value
        return dns.Record_MX(preference=preference, name=host.encode())
    if rrtype == "PTR":
        return dns.Record_PTR(value.encode())
    if rrtype == "TLSA":
        usage, selector, mtype, data = value
        return dns.UnknownRecord(bytes([usage, selector, mtype]) + data)
    data = value.encode() if isinstance(value, str) else value
    # A TXT record holds strings of at most 255 octets (RFC 1035 §3.3.14).
    return dns.Record_TXT(*[data[i:i + 255] for i in range(0, len(data), 255)] or [b""])


class ZoneServer:
    """Answers from ``records``: {name: [(type, value), ...]} (names without a dot at
    the end, any case). Change ``records`` at any time; ``queries`` counts questions."""

    def __init__(self, records: dict[str, list[tuple[str, object]]] | None = None):
        self.records = {k.lower(): list(v) for k, v in (records or {}).items()}
        self.queries: list[tuple[str, str]] = []
        self.authentic = False                 # set the AD bit on answers
        self.servfail: set[str] = set()        # names that answer SERVFAIL
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        port = self._sock.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        # TCP on the same port, for answers too large for a UDP datagram (RFC 7766)
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._tcp.bind(("127.0.0.1", port))
            self._tcp.listen(8)
            self._tcp.settimeout(0.2)
        except OSError:                 # the port is taken for TCP: UDP only
            self._tcp.close()
            self._tcp = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._tcp_thread = threading.Thread(target=self._serve_tcp, name="test-dns-tcp",
                                            daemon=True)

    def add(self, name: str, rrtype: str, value) -> None:
        """Add one record to the zone."""
        self.records.setdefault(name.lower().rstrip("."), []).append((rrtype, value))

    def start(self) -> ZoneServer:
        self._thread.start()
        if self._tcp is not None:
            self._tcp_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        if self._tcp is not None:
            self._tcp_thread.join(timeout=5)
            self._tcp.close()

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _peer = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    size = int.from_bytes(conn.recv(2), "big")
                    data = b""
                    while len(data) < size:
                        chunk = conn.recv(size - len(data))
                        if not chunk:
                            break
                        data += chunk
                    reply = self.answer(data, max_size=65535)
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)
                except Exception:  # noqa: BLE001 - a broken query gets no answer
                    continue

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._sock.sendto(self.answer(data), peer)
            except Exception:  # noqa: BLE001 - a broken query gets no answer
                continue

    def answer(self, data: bytes, max_size: int = 512) -> bytes:
        """The encoded response to one encoded query (truncated, with TC, past
        ``max_size`` octets: 512 over UDP)."""
        query = dns.Message()
        query.fromStr(data)
        reply = dns.Message(id=query.id, answer=1, opCode=query.opCode, auth=1,
                            recDes=query.recDes, recAv=1, maxSize=max_size)
        reply.queries = query.queries
        reply.authenticData = int(self.authentic)
        for q in query.queries:
            name = q.name.name.decode().lower().rstrip(".")
            self.queries.append((name, dns.QUERY_TYPES.get(q.type, str(q.type))))
            if name in self.servfail:
                reply.rCode = dns.ESERVER
                continue
            if name not in self.records:
                reply.rCode = dns.ENAME
                continue
            for rrtype, value in self.records[name]:
                if _TYPES.get(rrtype) == q.type:
                    reply.answers.append(dns.RRHeader(
                        name=q.name.name, type=q.type, ttl=60, auth=True,
                        payload=_payload(rrtype, value)))
        return reply.toStr()
