"""A real SMTP server (aiosmtpd) and a real HTTP SMS gateway, in the test's event loop.

Both keep what they received; the SMTP server can be stopped and started again
on its port ("SMTP down": its open connections go too), drop its open connections
while it goes on listening, refuse chosen recipients (550), and counts the
connections clients opened; the gateway can be told to answer 500.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from devtools.devbroker import free_port
from tests.http_util import serving


@dataclass
class Mail:
    to: list[str]
    message: EmailMessage
    arrived: float

    @property
    def subject(self) -> str:
        return str(self.message["subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        return str(part.get_content()) if part is not None else ""


class MailBox:
    """An SMTP server that keeps every message in memory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mails: list[Mail] = []
        self.arrived = asyncio.Event()
        self.connections = 0  # SMTP connections clients opened, in all
        self.refused: set[str] = set()  # recipients answered 550
        self._server: asyncio.Server | None = None
        self._sessions: list[SMTP] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        loop = asyncio.get_running_loop()
        self.mails.append(Mail(list(envelope.rcpt_tos), message, loop.time()))
        self.arrived.set()
        return "250 Message accepted for delivery"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def session() -> SMTP:
            self.connections += 1
            smtp = SMTP(self, hostname="mailbox.localhost", loop=loop)
            self._sessions.append(smtp)
            return smtp

        self._server = await loop.create_server(session, "127.0.0.1", self.port)

    @property
    def open_connections(self) -> int:
        """Connections a client holds open now."""
        self._sessions = [s for s in self._sessions if s.transport is not None]
        return len(self._sessions)

    def drop_connections(self) -> None:
        """Close every open connection from the server's side (it keeps listening)."""
        sessions, self._sessions = self._sessions, []
        for smtp in sessions:
            if smtp.transport is not None:
                smtp.transport.close()

    async def stop(self) -> None:
        self.drop_connections()  # a server that is down keeps no connection either
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.to]


@dataclass
class SmsGateway:
    """An HTTP SMS gateway: ``POST /sms`` ``{"to", "text", "id"}``; ``failing`` answers 500."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    failing: bool = False

    def to(self, phone: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m["to"] == phone]


@contextlib.asynccontextmanager
async def sms_gateway() -> AsyncIterator[SmsGateway]:
    gateway = SmsGateway()

    app = FastAPI()

    @app.post("/sms")
    async def send(request: Request) -> JSONResponse:
        body = await request.json()
        if gateway.failing:
            gateway.refused += 1
            return JSONResponse({"error": "gateway down"}, status_code=500)
        gateway.received.append(body)
        return JSONResponse({"accepted": True})

    async with serving(app) as base:
        gateway.url = f"{base}/sms"
        yield gateway


@contextlib.asynccontextmanager
async def mailbox() -> AsyncIterator[MailBox]:
    box = MailBox()
    await box.start()
    try:
        yield box
    finally:
        await box.stop()
