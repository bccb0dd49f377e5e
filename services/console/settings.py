"""Where the console finds the services, and how it seals its sessions (environment)."""

from __future__ import annotations

import hashlib

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.runtime.settings import development_secret

DEFAULT_CONSOLE_PORT = 8000
# API.md's default ports; the console calls the services over HTTP only, so it
# names where they listen rather than loading their code (the catalogue).
API_PORTS = {
    "identity": 8001,
    "departments": 8002,
    "tickets": 8003,
    "clients": 8004,
    "notifier": 8005,
}


def _local(service: str) -> str:
    return f"http://127.0.0.1:{API_PORTS[service]}"


class ConsoleSettings(BaseSettings):
    """Every field comes from the environment variable of the same name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # CONSOLE_PORT as API.md names ports; SERVICE_PORT/SERVICE_HOST as the image sets them.
    console_host: str = Field(
        default="127.0.0.1", validation_alias=AliasChoices("console_host", "service_host")
    )
    console_port: int = Field(
        default=DEFAULT_CONSOLE_PORT,
        validation_alias=AliasChoices("console_port", "service_port"),
    )
    identity_url: str = _local("identity")
    departments_url: str = _local("departments")
    tickets_url: str = _local("tickets")
    clients_url: str = _local("clients")
    notifier_url: str = _local("notifier")
    # Seals the session cookie; every console replica needs the same one. Without it
    # (development), one kept in var/console_secret. The console's alone: no service
    # shares it, and it signs no token.
    console_secret: SecretStr | None = None
    var_dir: str = "var"
    # Behind HTTPS: the cookie is sent over HTTPS only.
    console_secure_cookies: bool = False
    # Seconds an upstream call may take before the page says the service is unavailable.
    console_upstream_timeout: float = 10.0
    log_level: str = "INFO"
    log_format: str = "json"

    def upstream(self, service: str) -> str:
        url: str = getattr(self, f"{service}_url")
        return url.rstrip("/")

    def session_key(self) -> bytes:
        """32 bytes for AES-GCM, derived from the secret (never the secret itself)."""
        if self.console_secret is not None:
            seed = self.console_secret.get_secret_value()
        else:
            seed = development_secret(self.var_dir, "console_secret")
        return hashlib.sha256(b"console-session\x00" + seed.encode()).digest()
