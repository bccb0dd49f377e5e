"""E-mail through SMTP (aiosmtplib): plain, implicit TLS or STARTTLS, with or without login,
over a pool of connections kept open.

A mail is a plain-text part and an HTML part of the same text, plus the files
of the conversation (fetched from the service that holds them when it is
sent). A mail of a conversation is threaded: ``Message-ID`` is the notice's
own (the same on every attempt), ``In-Reply-To`` and ``References`` name the
thread (``<ticket-<id>@<domain>>``), so a mail program shows one thread per
ticket and a reply by mail names the ticket; ``Reply-To`` is the department's
inbound address when there is one. Every notice says ``Auto-Submitted:
auto-generated`` (RFC 3834), so well-behaved auto-responders do not answer it.
Links that are secrets (a rating link, a password-reset link) are put into the
text only here, when the mail is sent: no event or read model holds them.

Connections (``SmtpPool``): at most ``SMTP_POOL_SIZE`` (default 4) open at once,
each carrying one mail transaction after another (MAIL, RCPT, DATA; aiosmtplib
sends a command and awaits its answer before the next, so even on a server that
advertises PIPELINING the commands of one mail are not pipelined: the pool's
connections are what runs mails side by side). Each is opened as a single mail's
used to be (TLS from the first byte, or STARTTLS, then login, with the settings of
``NotifierSettings``), kept while in use, and closed (QUIT) once idle for
``SMTP_POOL_IDLE_SECONDS``. A mail that fails on a kept connection because the
connection broke (the server closed it, a reset, a timeout) is sent once more on
a fresh one; a refusal by the server (a recipient refused, a 5xx after DATA) is
the mail's failure, and the connection stays in the pool (aiosmtplib resets the
envelope). A broken connection is never put back. The one duplicate this can
cause (the server took the DATA and the connection broke before its answer) is
the gap the postman already names: the copy carries the same ``Message-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.notifier.adapters.identity_http import PLACEHOLDER as RESET_PLACEHOLDER
from services.notifier.app.ports import ConversationUnavailable, DeliveryError
from services.notifier.settings import NotifierSettings
from shared.access import rating_links
from shared.domain.events import utcnow

FetchFile = Callable[[str, str], Awaitable[bytes | None]]
ResetLink = Callable[[str], Awaitable[str]]


async def _no_files(service: str, path: str) -> bytes | None:
    return None


async def _no_reset_links(reset_id: str) -> str:
    raise DeliveryError("no identity service to ask for the reset link")


def mail_domain(sender: str) -> str:
    """The domain of the sender's address: the right-hand side of our Message-IDs."""
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "backoffice.localhost"


def as_html(text: str) -> str:
    """The plain text as a minimal HTML part: escaped, line breaks kept."""
    escaped = html.escape(text).replace("\n", "<br>\n")
    return (
        '<!DOCTYPE html><html><body><div style="font-family:sans-serif">'
        f"{escaped}</div></body></html>\n"
    )


# What says the connection itself is gone (not that the server refused the mail):
# aiosmtplib's SMTPServerDisconnected and SMTPConnectError are ConnectionErrors, its
# timeouts TimeoutErrors.
BROKEN: tuple[type[BaseException], ...] = (ConnectionError, OSError, TimeoutError)
QUIT_SECONDS = 2.0  # a QUIT to an idle connection: longer, and it is simply closed


class SmtpPool:
    """Open SMTP connections reused mail after mail (rules in the module docstring).

    ``opened`` counts the connections made (for tests and the bench); ``send`` may
    be called concurrently: at most ``size`` mails are on the wire at once, the
    others wait for a connection.
    """

    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings
        self.size = settings.smtp_pool_size
        self.idle_seconds = settings.smtp_pool_idle_seconds
        self.opened = 0
        self._gate = asyncio.Semaphore(self.size)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # (connection, idle since)
        self._reaper: asyncio.Task[None] | None = None

    def __repr__(self) -> str:  # never the password
        return f"SmtpPool({self.settings.smtp_host}:{self.settings.smtp_port}, size={self.size})"

    async def send(self, message: EmailMessage) -> None:
        """Send ``message`` on a kept connection (once more on a fresh one if that one
        turns out broken) or a new one; raises what aiosmtplib raises."""
        async with self._gate:
            kept = self._take()
            if kept is not None:
                try:
                    await self._send_on(kept, message)
                    return
                except BROKEN:
                    pass  # closed by the server while idle, say: once more, on a fresh one
            await self._send_on(await self._open(), message)

    async def _send_on(self, client: aiosmtplib.SMTP, message: EmailMessage) -> None:
        try:
            await client.send_message(message)
        except BROKEN:
            client.close()
            raise
        except aiosmtplib.SMTPException:
            # The server refused this mail; the envelope was reset, the connection is good.
            if client.is_connected:
                self._keep(client)
            else:
                client.close()
            raise
        except BaseException:
            client.close()  # cancelled or worse mid-transaction: its state is unknown
            raise
        self._keep(client)

    async def _open(self) -> aiosmtplib.SMTP:
        s = self.settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=password if s.smtp_username else None,
            use_tls=s.smtp_tls,
            start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout_seconds,
        )
        try:
            await client.connect()  # EHLO, STARTTLS and login as the settings say
        except BaseException:
            client.close()  # a refused login, say: the socket must not outlive it
            raise
        self.opened += 1
        return client

    def _take(self) -> aiosmtplib.SMTP | None:
        """The most recently used open connection (the least likely to have timed out
        at the server), dropping the ones that closed meanwhile."""
        while self._idle:
            client, _ = self._idle.pop()
            if client.is_connected:
                return client
            client.close()
        return None

    def _keep(self, client: aiosmtplib.SMTP) -> None:
        self._idle.append((client, time.monotonic()))
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap())

    async def _reap(self) -> None:
        """Close the connections idle for ``idle_seconds``; ends when none is left idle."""
        while self._idle:
            oldest = min(since for _, since in self._idle)
            await asyncio.sleep(max(0.0, oldest + self.idle_seconds - time.monotonic()) + 0.05)
            now = time.monotonic()
            expired = [c for c, since in self._idle if now - since >= self.idle_seconds]
            self._idle = [(c, t) for c, t in self._idle if now - t < self.idle_seconds]
            for client in expired:
                await _quit(client)

    @property
    def idle(self) -> int:
        """Connections open and waiting for a mail."""
        return len(self._idle)

    async def close(self) -> None:
        """QUIT every idle connection (the service stopping)."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        idle, self._idle = self._idle, []
        for client, _ in idle:
            await _quit(client)


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await asyncio.wait_for(client.quit(), QUIT_SECONDS)
    except Exception:
        client.close()  # already gone, or slow to say goodbye: nothing to keep


class SmtpMailer:
    def __init__(
        self,
        settings: NotifierSettings,
        fetch: FetchFile = _no_files,
        key: Ed25519PrivateKey | None = None,
        reset_link: ResetLink = _no_reset_links,
        pool: SmtpPool | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool or SmtpPool(settings)
        self.fetch = fetch
        self.reset_link = reset_link
        self.domain = mail_domain(settings.smtp_from)
        # The notifier's own key signs rating links (tickets verifies them with its public
        # half); without one (a mailer that sends no rating requests) a link is refused.
        self._key = key

    def _rating_link(self, notice_id: str, rating_of: str, client_id: str) -> str:
        """The signed link of a rating request, made now and kept nowhere; its id is the
        notice's, so a mail sent again carries a link that is used up with the first."""
        ticket_id, _, message_id = rating_of.partition("/")
        if self._key is None:
            raise ValueError("this mailer has no key to sign rating links with")
        token = rating_links.issue(
            self._key,
            "notifier",
            rating_links.RatingLink(notice_id, client_id, ticket_id, message_id or None),
        )
        return f"{self.settings.tickets_public_url.rstrip('/')}/rate/{token}"

    def __repr__(self) -> str:  # never the password
        s = self.settings
        return f"SmtpMailer({s.smtp_host}:{s.smtp_port}, tls={s.smtp_tls or s.smtp_starttls})"

    async def send(
        self,
        notice_id: str,
        to: str,
        subject: str,
        body: str,
        *,
        thread_id: str | None = None,
        reply_to: str | None = None,
        files: str | None = None,
        rating_of: str | None = None,
        client_id: str | None = None,
        reset_of: str | None = None,
    ) -> None:
        s = self.settings
        if reset_of and RESET_PLACEHOLDER in body:
            # Asked for now and put only into the message itself (see identity_http).
            body = body.replace(RESET_PLACEHOLDER, await self.reset_link(reset_of))
        if rating_of and client_id and rating_links.PLACEHOLDER in body:
            body = body.replace(
                rating_links.PLACEHOLDER, self._rating_link(notice_id, rating_of, client_id)
            )
        message = EmailMessage()
        message["From"] = s.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(utcnow())
        # The same id on every attempt: a receiving server that dedupes by it drops a
        # copy sent again after a crash between its acceptance and our record of it.
        message["Message-ID"] = f"<{notice_id}@{self.domain}>"
        if thread_id:
            thread = f"<{thread_id}@{self.domain}>"
            message["In-Reply-To"] = thread
            message["References"] = thread
        if reply_to:
            message["Reply-To"] = reply_to
        message["Auto-Submitted"] = "auto-generated"
        message["X-Notice-Id"] = notice_id
        message.set_content(body)
        message.add_alternative(as_html(body), subtype="html")
        for file in orjson.loads(files) if files else []:
            try:
                data = await self.fetch(str(file["service"]), str(file["path"]))
            except ConversationUnavailable as error:
                raise DeliveryError(f"attachment: {error}"[:300]) from None
            if data is None:
                continue  # gone with an erased client: the text still goes
            maintype, _, subtype = str(file.get("content_type", "")).partition("/")
            message.add_attachment(
                data,
                maintype=maintype or "application",
                subtype=subtype or "octet-stream",
                filename=str(file.get("filename") or "attachment"),
            )
        try:
            await self.pool.send(message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            # The exception's text may quote the server, never our credentials.
            raise DeliveryError(f"smtp: {type(error).__name__}: {error}"[:300]) from None
        except ValueError:
            # aiosmtplib's check of the addresses, before a byte is sent: this mail's
            # failure (recorded and retried as any), not the batch's.
            raise DeliveryError("smtp: an address the SMTP client cannot send to") from None

    async def close(self) -> None:
        await self.pool.close()
