"""The notifier's own options, from environment variables of the same name (pydantic-settings).

SMTP and SMS are set here and nowhere else. The SMTP password and the SMS
gateway token are secrets: never logged, never in a repr.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.notifier.domain.delivery import RetryPolicy


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Mail: `make run` starts a sink on 127.0.0.1:1025 that accepts anything.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    smtp_tls: bool = Field(default=False, description="TLS from the first byte (port 465)")
    smtp_starttls: bool = Field(default=False, description="upgrade with STARTTLS (port 587)")
    smtp_from: str = "Support <support@backoffice.localhost>"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    # Connections kept open and reused mail after mail (``adapters.mail.SmtpPool``).
    smtp_pool_size: int = Field(default=4, ge=1, le=64)
    smtp_pool_idle_seconds: float = Field(default=30.0, gt=0)
    # SMS: an HTTP gateway that takes POST {"to", "text"} (empty: SMS are not sent).
    sms_gateway_url: str = ""
    sms_gateway_token: SecretStr | None = None
    sms_timeout_seconds: float = Field(default=10.0, gt=0)
    # Deliveries: attempts in all, and the back-off between them.
    delivery_attempts: int = Field(default=5, ge=1, le=50)
    delivery_retry_seconds: float = Field(default=5.0, gt=0)
    delivery_retry_max_seconds: float = Field(default=600.0, gt=0)
    delivery_concurrency: int = Field(default=8, ge=1, le=100)
    # Response-time warnings: this much business time before a ticket's response is due.
    sla_warning_minutes: float = Field(default=30.0, ge=0)
    # The clients service: a client's e-mail, phone and contacts (sealed on its topic).
    clients_url: str = "http://127.0.0.1:8004"
    # The tickets service: a reply's text and files, a ticket's number and subject
    # (sealed on its topic), for the mails that carry the conversation.
    tickets_url: str = "http://127.0.0.1:8003"
    # The identity service: the link of a password reset, asked for when its mail is sent.
    identity_url: str = "http://127.0.0.1:8001"
    # Where clients reach the tickets service: the base of the rating links in mails.
    tickets_public_url: str = "http://127.0.0.1:8003"
    # The stream processor (faust): how quickly a (re)started worker joins its group.
    stream_session_timeout_seconds: float = Field(default=6.0, gt=0)
    stream_heartbeat_seconds: float = Field(default=0.5, gt=0)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.delivery_attempts,
            first_delay=timedelta(seconds=self.delivery_retry_seconds),
            max_delay=timedelta(seconds=self.delivery_retry_max_seconds),
        )
