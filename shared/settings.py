"""Service configuration from the environment (pydantic-settings)."""

from __future__ import annotations

import os

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORTS = {
    "identity": 8001,
    "departments": 8002,
    "tickets": 8003,
    "clients": 8004,
    "notifier": 8005,
}


class ServiceSettings(BaseSettings):
    """What one service needs to run; every field comes from an env var of the same name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = Field(default="service", description="set by each service")
    service_host: str = "127.0.0.1"
    service_port: int = 0
    var_dir: str = "var"
    event_store_url: str = ""
    read_model_url: str = ""
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    topic_partitions: int = 3
    relay_enabled: bool = True
    log_level: str = "INFO"
    log_format: str = "json"

    def resolved(self, name: str) -> ServiceSettings:
        """Fill the defaults that depend on the service's name."""
        values = self.model_dump()
        values["service_name"] = name
        # API.md names per-service variables (IDENTITY_PORT, ...); SERVICE_PORT wins.
        named_port = os.environ.get(f"{name.upper()}_PORT")
        values["service_port"] = (
            self.service_port or int(named_port or 0) or DEFAULT_PORTS.get(name, 8000)
        )
        values["event_store_url"] = self.event_store_url or f"sqlite:///{self.var_dir}/{name}.db"
        values["read_model_url"] = self.read_model_url or f"sqlite:///{self.var_dir}/{name}-read.db"
        return ServiceSettings.model_construct(**values)
