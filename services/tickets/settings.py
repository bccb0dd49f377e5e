"""The tickets service's own options: environment variables of the same name.

The kernel's options (store, read models, broker, tokens) are
``shared.runtime.settings.ServiceSettings``; these are the ones only tickets reads.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from services.tickets.adapters.mail_imap import ImapMailbox
from shared.domain.attachments import DEFAULT_TYPES


class TicketsSettings(BaseSettings):
    """The tickets service's own options (environment variables of the same name)."""

    # Business hours within which a department promises a response (its expected
    # response time: counted by the department's schedule, round the clock without one).
    support_response_hours: float = 4.0
    # The clients service: %client_person% of response templates is read there.
    clients_url: str = "http://127.0.0.1:8004"
    # Files of ticket messages: the largest accepted, the types accepted (by name and
    # first bytes; default ``shared.domain.attachments.DEFAULT_TYPES``), and a virus scanner's
    # command that reads the file on stdin and exits 0 when clean (none: no scan).
    ticket_attachment_max_bytes: int = 10 * 1024 * 1024
    ticket_attachment_types: list[str] = sorted(DEFAULT_TYPES)
    attachment_scan_command: str = ""
    # The mail gateway (services.tickets.app.mail_gateway): SMTP, or LMTP behind a mail
    # server, on INBOUND_SMTP_HOST:INBOUND_SMTP_PORT (0: no gateway; `make run`: 2525).
    inbound_smtp_host: str = "127.0.0.1"
    inbound_smtp_port: int = Field(default=0, ge=0, le=65535)
    inbound_smtp_protocol: Literal["smtp", "lmtp"] = "smtp"
    inbound_mail_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    inbound_mail_max_files: int = Field(default=10, ge=0, le=100)
    inbound_mail_keep_days: float = Field(default=30.0, gt=0)
    # How long the gateway believes the clients service's answer to "who writes from this
    # address" (services.tickets.app.senders; clients' facts end it sooner; 0: ask every mail).
    inbound_sender_cache_seconds: float = Field(default=60.0, ge=0)
    # Addresses ("spam@example.com") or whole domains ("@example.com") never heard.
    inbound_blocked_senders: list[str] = []
    # IMAP mailboxes polled for mail (JSON: [{"host", "port", "ssl", "user", "password",
    # "folder", "address"}]), every so many seconds.
    inbound_imap_mailboxes: list[ImapMailbox] = []
    inbound_imap_poll_seconds: float = Field(default=30.0, gt=0)
    # Where the gateway's answers go out (the notice to an unknown sender when the
    # support setting unknown_senders is "reject"): the notifier's SMTP server, same names.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    smtp_tls: bool = False
    smtp_starttls: bool = False
    smtp_from: str = "Support <support@backoffice.localhost>"
