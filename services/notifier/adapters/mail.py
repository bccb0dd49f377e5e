"""E-mail through SMTP (aiosmtplib): plain, implicit TLS or STARTTLS, with or without login."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from services.notifier.app.ports import DeliveryError
from services.notifier.settings import NotifierSettings
from shared.domain.events import utcnow


class SmtpMailer:
    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings

    def __repr__(self) -> str:  # never the password
        s = self.settings
        return f"SmtpMailer({s.smtp_host}:{s.smtp_port}, tls={s.smtp_tls or s.smtp_starttls})"

    async def send(self, notice_id: str, to: str, subject: str, body: str) -> None:
        s = self.settings
        message = EmailMessage()
        message["From"] = s.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(utcnow())
        # The same id on every attempt: a receiving server that dedupes by it drops a
        # copy sent again after a crash between its acceptance and our record of it.
        message["Message-ID"] = make_msgid(idstring=notice_id, domain="notifier.backoffice")
        message["X-Notice-Id"] = notice_id
        message.set_content(body)
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
