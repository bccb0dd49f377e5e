"""Service configuration from the environment (pydantic-settings).

Rules it keeps: every field comes from the environment variable of its name;
keys are Ed25519 (``shared.access.keys``): ``IDENTITY_SIGNING_KEY`` is read by
identity alone (``identity_private_key``), the rest by every service; a key left
unset is found in ``KEYS_DIR`` (default ``var/keys``), generated there once in
development.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.access.keys import (
    ServiceKeys,
    ensure_keys,
    identity_key_path,
    load_private_key,
    load_public_key,
    parse_public_keys,
    service_key_path,
)
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
    # Ed25519 keys, each a PEM text or a PEM file's path (shared.access.keys).
    identity_signing_key: SecretStr | None = Field(
        default=None, description="identity only: signs user tokens and identity's facts"
    )
    identity_public_key: str | None = Field(
        default=None, description="verifies user tokens and identity's facts"
    )
    service_signing_key: SecretStr | None = Field(
        default=None, description="this service's own key: signs its service tokens"
    )
    service_public_keys: dict[str, str] = Field(
        default={}, description='callers\' public keys: {"notifier": "<PEM or path>", ...}'
    )
    keys_dir: str = Field(default="", description="development keys (default: <var_dir>/keys)")
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
        values["keys_dir"] = self.keys_dir or str(Path(self.var_dir) / "keys")
        if self.identity_public_key is None or self.service_signing_key is None:
            # Development: what is not configured comes from the keys directory.
            ensure_keys(values["keys_dir"], [name])
            if self.identity_public_key is None:
                values["identity_public_key"] = str(
                    identity_key_path(values["keys_dir"]).with_suffix(".pub")
                )
            if self.service_signing_key is None:
                values["service_signing_key"] = SecretStr(
                    str(service_key_path(values["keys_dir"], name))
                )
        return ServiceSettings.model_construct(**values)

    # The keys, loaded (call on resolved settings; errors name the setting).

    def identity_private_key(self) -> Ed25519PrivateKey:
        """Identity's signing key: only identity calls this."""
        if self.identity_signing_key is not None:
            return load_private_key(
                self.identity_signing_key.get_secret_value(), "IDENTITY_SIGNING_KEY"
            )
        path = identity_key_path(self.keys_dir or Path(self.var_dir) / "keys")
        return load_private_key(str(path), "IDENTITY_SIGNING_KEY")

    def identity_verifying_key(self) -> Ed25519PublicKey:
        assert self.identity_public_key is not None, "resolved settings have it"
        return load_public_key(self.identity_public_key, "IDENTITY_PUBLIC_KEY")

    def service_private_key(self) -> Ed25519PrivateKey:
        assert self.service_signing_key is not None, "resolved settings have it"
        return load_private_key(self.service_signing_key.get_secret_value(), "SERVICE_SIGNING_KEY")

    def callers(self) -> ServiceKeys:
        """The public keys of the services that may call this one."""
        configured = parse_public_keys(self.service_public_keys, "SERVICE_PUBLIC_KEYS")
        directory = None if configured else Path(self.keys_dir or Path(self.var_dir) / "keys")
        return ServiceKeys(configured, directory)


def development_secret(var_dir: str, name: str = "console_secret") -> str:
    """A development secret shared through ``var/<name>`` (the console's cookie seal).

    Created once, readable by the owner only; production configures its own.
    """
    path = Path(var_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Write aside, then link into place: link() fails if another service won
        # the race, and nobody ever reads a half-written secret.
        candidate = path.with_name(f".{name}.{os.getpid()}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
        with contextlib.suppress(FileExistsError):
            os.link(candidate, path)
        candidate.unlink()
    return path.read_text().strip()
