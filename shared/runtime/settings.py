"""Service configuration from the environment (pydantic-settings)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.messaging.kafka_clients import Broker, ClientConfig, KafkaClientSettings


class ServiceSettings(KafkaClientSettings):
    """What one service needs to run; every field comes from an env var of the same name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = Field(default="service", description="set by each service")
    service_host: str = "127.0.0.1"
    service_port: int = 0
    var_dir: str = "var"
    event_store_url: str = ""
    read_model_url: str = ""
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Which broker and how to reach it: the fields of ``KafkaClientSettings``.
    topic_prefix: str = ""
    topic_partitions: int = 3
    relay_enabled: bool = True
    # PostgreSQL connections per process: the store pool, and as many, kept open, for
    # read models. Lower it when many processes share a server.
    db_pool_size: int = Field(default=10, ge=2, le=200)
    inbox_retention_days: int = Field(
        default=14,
        ge=1,
        description="days a consumer remembers a handled event id (≥ the topics' retention)",
    )
    consumer_max_failures: int = Field(
        default=5,
        ge=1,
        description="failures in a row of one consumed fact before it is parked in dead_letters",
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="signs access tokens; every service must share it"
    )
    access_token_minutes: int = 15
    trusted_proxies: list[str] = Field(
        default=[], description="CIDRs whose X-Forwarded-For is believed"
    )
    log_level: str = "INFO"
    log_format: str = "json"
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP collector (http://host:4318): turns traces on"
    )

    def resolved(self, name: str, default_port: int = 8000) -> ServiceSettings:
        """Fill the defaults that depend on the service (its name, its spec's port)."""
        values = self.model_dump()
        values["service_name"] = name
        # API.md names per-service variables (IDENTITY_PORT, ...); SERVICE_PORT wins.
        named_port = os.environ.get(f"{name.upper()}_PORT")
        values["service_port"] = self.service_port or int(named_port or 0) or default_port
        values["event_store_url"] = self.event_store_url or f"sqlite:///{self.var_dir}/{name}.db"
        values["read_model_url"] = self.read_model_url or f"sqlite:///{self.var_dir}/{name}-read.db"
        # The address carries how to connect (credentials, fetch wait) to every client.
        values["kafka_bootstrap_servers"] = Broker(
            self.kafka_bootstrap_servers, ClientConfig.from_settings(self)
        )
        if self.jwt_secret is None:
            values["jwt_secret"] = SecretStr(development_secret(self.var_dir))
        return ServiceSettings.model_construct(**values)


def development_secret(var_dir: str) -> str:
    """Without JWT_SECRET (development), one secret shared through ``var/jwt_secret``.

    Created once, readable by the owner only; production sets JWT_SECRET.
    """
    path = Path(var_dir) / "jwt_secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Write aside, then link into place: link() fails if another service won
        # the race, and nobody ever reads a half-written secret.
        candidate = path.with_name(f".jwt_secret.{os.getpid()}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
        with contextlib.suppress(FileExistsError):
            os.link(candidate, path)
        candidate.unlink()
    return path.read_text().strip()
