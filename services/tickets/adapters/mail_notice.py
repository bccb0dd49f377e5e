"""The gateway's own answers by mail (``NoticeMailer``): SMTP through aiosmtplib.

Rules kept: an answer about a mail is an auto-reply (RFC 3834): it says
``Auto-Submitted: auto-replied``, names the mail in ``In-Reply-To``, and goes
out with an empty return path (``MAIL FROM:<>``), so neither a vacation
responder nor a bounce can answer it and no loop can start. Login and TLS as
the notifier's mailer takes them (``SMTP_*``: the same server).
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

import aiosmtplib
from pydantic import SecretStr

from shared.domain.events import utcnow


class SmtpNotices:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str = "",
        password: SecretStr | None = None,
        tls: bool = False,
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self._password = password
        self.tls = tls
        self.starttls = starttls
        self.timeout = timeout

    def __repr__(self) -> str:  # never the password
        return f"SmtpNotices({self.host!r}, {self.port})"

    async def send_notice(self, to: str, subject: str, body: str, in_reply_to: str) -> None:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = to
        mail["Subject"] = subject
        mail["Date"] = format_datetime(utcnow())
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or "backoffice.localhost"
        mail["Message-ID"] = make_msgid(domain=domain)
        mail["In-Reply-To"] = mail["References"] = in_reply_to
        mail["Auto-Submitted"] = "auto-replied"
        mail.set_content(body)
        await aiosmtplib.send(
            mail,
            hostname=self.host,
            port=self.port,
            sender="",  # the null return path: nothing bounces back to us
            recipients=[to],
            username=self.username or None,
            password=self._password.get_secret_value() if self._password else None,
            use_tls=self.tls,
            start_tls=self.starttls or None,
            timeout=self.timeout,
        )
