"""Mail into the gateway from IMAP mailboxes (production mail kept by a provider's server).

Each mailbox (``INBOUND_IMAP_MAILBOXES``, a JSON list) is polled every
``INBOUND_IMAP_POLL_SECONDS``: every message in its folder is handed to the
gateway, and only once the gateway has given a final answer (applied, known
already, dropped as a machine's, or refused) is it deleted from the mailbox.
A temporary failure leaves it there for the next round: at least once, and the
gateway's Message-ID key makes it once. ``address`` is the inbound address the
mailbox receives for (the department is found by it). The password is a secret:
never logged, never in a repr. Python's ``imaplib`` runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
from email import message_from_bytes
from email.utils import parseaddr

import structlog
from pydantic import BaseModel, Field, SecretStr

from services.tickets.app.mail_gateway import MailGateway

log = structlog.get_logger(__name__)


class ImapMailbox(BaseModel):
    host: str
    port: int = Field(default=993, ge=1, le=65535)
    ssl: bool = True
    user: str
    password: SecretStr
    folder: str = "INBOX"
    address: str  # the inbound address whose mail lands here


class ImapFetcher:
    def __init__(self, gateway: MailGateway, mailbox: ImapMailbox, poll_seconds: float) -> None:
        self.gateway = gateway
        self.mailbox = mailbox
        self.poll_seconds = poll_seconds

    def __repr__(self) -> str:
        m = self.mailbox
        return f"ImapFetcher({m.user}@{m.host}:{m.port}/{m.folder})"

    async def run(self) -> None:
        while True:
            await self.fetch_once()
            await asyncio.sleep(self.poll_seconds)

    async def fetch_once(self) -> int:
        """Hand every message of the folder to the gateway; how many were handled for good."""
        m = self.mailbox
        connection = await asyncio.to_thread(self._connect)
        handled = 0
        try:
            uids = await asyncio.to_thread(self._uids, connection)
            for uid in uids:
                raw = await asyncio.to_thread(self._fetch, connection, uid)
                if raw is None:
                    continue
                headers = message_from_bytes(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
                # The return path the receiving server recorded; "<>" for bounces.
                return_path = str(headers.get("Return-Path", "")).strip()
                mail_from = (
                    ""
                    if return_path == "<>"
                    else parseaddr(return_path or str(headers.get("From", "")))[1]
                )
                outcome = await self.gateway.receive(raw, mail_from, [m.address])
                if outcome.temporary:
                    continue  # stays in the mailbox for the next round
                await asyncio.to_thread(self._delete, connection, uid)
                handled += 1
            await asyncio.to_thread(connection.expunge)
        finally:
            await asyncio.to_thread(_logout, connection)
        if handled:
            log.info("mail.imap_fetched", mailbox=repr(self), handled=handled)
        return handled

    def _connect(self) -> imaplib.IMAP4:
        m = self.mailbox
        connection = (
            imaplib.IMAP4_SSL(m.host, m.port, timeout=30)
            if m.ssl
            else imaplib.IMAP4(m.host, m.port, timeout=30)
        )
        connection.login(m.user, m.password.get_secret_value())
        status, _ = connection.select(m.folder)
        if status != "OK":
            raise imaplib.IMAP4.error(f"cannot select {m.folder}")
        return connection

    @staticmethod
    def _uids(connection: imaplib.IMAP4) -> list[bytes]:
        status, found = connection.uid("search", None, "NOT DELETED")  # type: ignore[arg-type]
        if status != "OK" or not found or not found[0]:
            return []
        return list(found[0].split())

    @staticmethod
    def _fetch(connection: imaplib.IMAP4, uid: bytes) -> bytes | None:
        status, parts = connection.uid("fetch", uid.decode(), "(BODY.PEEK[])")
        if status != "OK":
            return None
        for part in parts:
            if isinstance(part, tuple) and isinstance(part[1], bytes):
                return part[1]
        return None

    @staticmethod
    def _delete(connection: imaplib.IMAP4, uid: bytes) -> None:
        connection.uid("store", uid.decode(), "+FLAGS", "(\\Deleted)")


def _logout(connection: imaplib.IMAP4) -> None:
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        connection.logout()
