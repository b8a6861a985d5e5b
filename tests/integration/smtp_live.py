"""Helpers for SMTP integration tests: a live server from make_smtp_service on
127.0.0.1:0 and a raw-socket client for byte-level tests."""

from __future__ import annotations

import socket
import ssl
import time

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from mailet_mta.config.model import TLSConfig
from mailet_mta.smtp import make_smtp_service
from tests.support.certs import make_cert
from tests.support.smtp_backend import RecordingBackend, smtp_config


class LiveServer:
    """A started SMTP service; ``port``, ``backend``, ``stop()``."""

    def __init__(self, tmp_path, tls: bool = False, **config):
        self.backend = RecordingBackend(tmp_path / "blobs", inline_limit=65536)
        self.cert = None
        if tls:
            self.cert, key = make_cert(tmp_path / "certs")
            config["tls"] = TLSConfig(certificate=str(self.cert), private_key=str(key))
        self.service = make_smtp_service(smtp_config(**config), self.backend)
        self.service.startService()
        self.ready = self.service.listening
        self.stopped = False

    @property
    def port(self) -> int:
        return self.service.port

    def start_blocking(self) -> "LiveServer":
        """Wait for the listener from a synchronous fixture."""
        pytest_twisted.blockon(self.ready)
        return self

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def stop(self):
        if not self.stopped:
            self.stopped = True
            return self.service.stopService()
        return None


async def wait_for(predicate, timeout: float = 5.0) -> None:
    """Let the reactor run until ``predicate()`` is true (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await deferLater(reactor, 0.01)


class RawClient:
    """A blocking socket speaking raw bytes (use from a thread)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        """Read one complete (possibly multi-line) reply; returns its last line."""
        while True:
            line = self.file.readline().decode()
            if not line:
                return ""
            if line[3:4] != "-":
                return line.rstrip("\r\n")

    def replies(self, n: int) -> list[str]:
        return [self.reply() for _ in range(n)]

    def close(self) -> None:
        self.file.close()
        self.sock.close()
