"""A local SMTP sink (aiosmtpd, in-process) and a local webhook receiver, both on free loopback ports."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from devstack import free_port


@dataclass
class MailSink:
    port: int
    messages: list[Message] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    refuse: bool = False  # answer 451 to every message

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return "451 4.3.0 try again later"
        self.raw.append(bytes(envelope.content))
        self.messages.append(message_from_bytes(bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink(free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    port: int
    received: list[Received] = field(default_factory=list)
    status: int = 204

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/referral-broker"


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(receiver.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # silence
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
