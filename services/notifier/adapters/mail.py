"""E-mail through SMTP (aiosmtplib): plain, implicit TLS or STARTTLS, with or without login.

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
"""

from __future__ import annotations

import html
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


class SmtpMailer:
    def __init__(
        self,
        settings: NotifierSettings,
        fetch: FetchFile = _no_files,
        key: Ed25519PrivateKey | None = None,
        reset_link: ResetLink = _no_reset_links,
    ) -> None:
        self.settings = settings
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
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        try:
            await aiosmtplib.send(
                message,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username or None,
                password=password if s.smtp_username else None,
                use_tls=s.smtp_tls,
                start_tls=s.smtp_starttls,
                timeout=s.smtp_timeout_seconds,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            # The exception's text may quote the server, never our credentials.
            raise DeliveryError(f"smtp: {type(error).__name__}: {error}"[:300]) from None
