"""Mail into the gateway: an SMTP or LMTP server (aiosmtpd), and senders looked up at clients.

The server answers after the gateway has applied the mail: 250 when it became
(or already was) a ticket or a message, or was a machine's mail dropped on
purpose (a bounce must not be answered with a bounce); 550 with the reason when
it is refused; 451 when something it needs was down, so the sending server
tries again later (at least once). Mails above the size cap are refused by the
server itself before they are read whole (552).

The address of ``MAIL FROM`` and ``RCPT TO`` in its plain form (``<local@domain>``,
dot-atoms only, what servers send) is taken as written; any other form goes to
aiosmtpd's own parser (the ``email`` package's, 85 µs of CPU an address, two a mail),
which gives the same address for the plain form.
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any, Literal

import httpx
import structlog
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.tickets.app.mail_gateway import MailGateway
from shared.http.internal import issue_service_token
from shared.observability import causation

log = structlog.get_logger(__name__)


class ClientSenders:
    """The client who writes from an address (clients' internal API, a service token)."""

    def __init__(self, base_url: str, key: Ed25519PrivateKey) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key  # tickets' own: its tokens name it
        # One client for the process, its connections kept alive: a new client per mail
        # builds a TLS context each time (~40 ms of CPU, most of a mail's cost).
        self._http = httpx.AsyncClient(timeout=5.0, event_hooks=causation.HTTPX_HOOKS)

    def __repr__(self) -> str:
        return f"ClientSenders({self.base_url!r})"

    async def client_of(self, email: str, min_position: int = 0) -> str | None:
        token = issue_service_token(self._key, "tickets")
        params: dict[str, str | int] = {"email": email}
        if min_position:  # as of that fact of the clients' log at least (503 until then)
            params["min_position"] = min_position
        answer = await self._http.get(
            f"{self.base_url}/internal/clients/by-email",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        )
        if answer.status_code == 404:
            return None
        answer.raise_for_status()  # anything else: the mail is tried again later
        client_id: str = answer.json()["client_id"]
        return client_id


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# The parameters after it as aiosmtpd leaves them (the blanks after ``>`` gone); a comment
# there, ``(…)``, takes the parser's way.
_PLAIN = re.compile(
    rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*([^ \t(].*)?",
    re.DOTALL,
)


class _PlainAddresses(SMTP):
    """aiosmtpd's server, plain addresses read without the ``email`` package's parser."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN.fullmatch(arg.lstrip())
        if plain is None:
            return super()._getaddr(arg)
        address, rest = plain.group(1), plain.group(2) or ""
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest


class _Smtp(_PlainAddresses):
    pass


class _Lmtp(_PlainAddresses, LMTP):
    pass


class InboundServer:
    """Serves SMTP (or LMTP) on ``host:port`` until cancelled; each mail to the gateway."""

    def __init__(
        self,
        gateway: MailGateway,
        host: str,
        port: int,
        protocol: Literal["smtp", "lmtp"] = "smtp",
    ) -> None:
        self.gateway = gateway
        self.host = host
        self.port = port
        self.protocol = protocol
        self.serving = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else str(content).encode()
        outcome = await self.gateway.receive(raw, envelope.mail_from or "", list(envelope.rcpt_tos))
        if outcome.temporary:
            return "451 4.3.0 Temporary failure, please try again later"
        if outcome.status == "rejected":
            reason = "".join(c for c in (outcome.reason or "") if 32 <= ord(c) < 127)
            return f"550 5.7.1 {reason[:200] or 'Refused'}"
        return f"250 2.0.0 {outcome.status}"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        kind = _Lmtp if self.protocol == "lmtp" else _Smtp
        limit = self.gateway.max_bytes
        # Once, off the loop: without it aiosmtpd asks the resolver (socket.getfqdn),
        # blocking the loop, at every connection, and a remote server opens one a mail.
        hostname = await asyncio.to_thread(socket.getfqdn)
        server = await loop.create_server(
            lambda: kind(
                self, data_size_limit=limit, enable_SMTPUTF8=True, hostname=hostname, loop=loop
            ),
            self.host,
            self.port,
        )
        log.info("mail.listening", host=self.host, port=self.port, protocol=self.protocol)
        self.serving.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.serving.clear()
            server.close()
            await server.wait_closed()
