"""How every Kafka client of a service connects: security and fetch settings in one place.

Rules it keeps:

* Every aiokafka producer, consumer and admin client the kernel makes, and the
  notifier's faust app, takes its connection options from here
  (``consumer_options``, ``producer_options``, ``admin_options``,
  ``faust_options``): one service never has a client that connects differently
  from its others.
* The options travel with the bootstrap address: a ``Broker`` is the address (a
  ``str``, so every signature that takes one is unchanged) carrying its
  ``ClientConfig``; ``ServiceSettings.resolved`` makes one from the settings. A
  plain string gets the configuration of the process's environment.
* Credentials (``KAFKA_SECURITY_PROTOCOL`` PLAINTEXT | SSL | SASL_PLAINTEXT |
  SASL_SSL, ``KAFKA_SASL_MECHANISM`` SCRAM-SHA-256 | SCRAM-SHA-512 | PLAIN,
  ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD``, ``KAFKA_SSL_CAFILE``) are
  never part of the address, its ``repr`` or a log line.
* The fetch wait is the broker's: Apache Kafka answers a held fetch as soon as
  a message arrives, so consumers wait long (``FETCH_WAIT_MS["apache"]``) and an
  idle service costs little; Tansu holds an empty fetch for much of the wait
  even when a message arrives, so on it consumers ask every 10 ms, the delay a
  revocation may take. The long wait is 100 ms, not aiokafka's 500: aiokafka
  keeps one fetch in flight per broker, and once a fetch came back with one
  partition's messages the next one (for the other partitions) is held by the
  broker for the whole wait while that partition's next message waits behind
  it; the wait bounds that delay. ``KAFKA_IMPL`` names the broker (``apache``,
  the production default, or ``tansu``, what ``make run`` and the default tests
  start); ``KAFKA_FETCH_MAX_WAIT_MS`` overrides the wait.
* A quiet consumer asks less often (``pace_fetches``, for every long-running
  consumer): once nothing has come for ``QUIET_SECONDS`` its fetches wait
  ``IDLE_FETCH_WAIT_MS`` (100 ms, Apache Kafka's wait) instead of Tansu's 10,
  and the first fetch that brings anything sets the short wait again. On Tansu
  ten polls a second instead of a hundred per idle consumer, for the services
  and for the broker that answers them (the stack idled at 1.0–1.2 cores of 2
  with every consumer at 10 ms); a fact after a quiet second arrives within the
  longer wait (against Tansu, with a 100 ms wait: 10–20 ms on average, 29–51
  at most; ``python -m bench.fetch_wait``), and a flow of facts (a burst of
  revocations, a queue of mails) keeps the short one.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

FETCH_WAIT_MS = {"apache": 100, "tansu": 10}
IDLE_FETCH_WAIT_MS = 100
QUIET_SECONDS = 1.0
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
SSL_PROTOCOLS = ("SSL", "SASL_SSL")


class KafkaClientSettings(BaseSettings):
    """Which broker this is and how to reach it, from the environment (``KAFKA_*``).

    ``shared.runtime.ServiceSettings`` extends it; the fetch wait follows the
    broker, the credentials go to every producer, consumer and admin client.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    kafka_impl: Literal["apache", "tansu"] = "apache"
    kafka_fetch_max_wait_ms: int | None = Field(default=None, ge=0, le=30_000)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-256"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = Field(
        default=None, description="CA bundle for the broker's certificate (SSL, SASL_SSL)"
    )


@dataclass(frozen=True)
class ClientConfig:
    """How to connect to one broker (see the module's rules)."""

    impl: str = "apache"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-256"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    fetch_max_wait_ms: int | None = None

    def __repr__(self) -> str:  # the password stays out of every log and error
        return (
            f"ClientConfig(impl={self.impl!r}, security_protocol={self.security_protocol!r}, "
            f"sasl_mechanism={self.sasl_mechanism!r}, sasl_username={self.sasl_username!r})"
        )

    @classmethod
    def from_settings(cls, settings: KafkaClientSettings) -> ClientConfig:
        password = settings.kafka_sasl_password
        return cls(
            impl=settings.kafka_impl,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password is not None else None,
            ssl_cafile=settings.kafka_ssl_cafile,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        )

    @classmethod
    def from_environment(cls) -> ClientConfig:
        return cls.from_settings(KafkaClientSettings())

    @property
    def fetch_wait_ms(self) -> int:
        if self.fetch_max_wait_ms is not None:
            return self.fetch_max_wait_ms
        return FETCH_WAIT_MS.get(self.impl, FETCH_WAIT_MS["apache"])

    @property
    def idle_fetch_wait_ms(self) -> int:
        """The wait of a quiet consumer (``pace_fetches``): never shorter than the busy one."""
        return max(self.fetch_wait_ms, IDLE_FETCH_WAIT_MS)

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in SSL_PROTOCOLS:
            return None
        return ssl.create_default_context(cafile=self.ssl_cafile)

    def security(self) -> dict[str, Any]:
        """aiokafka's keyword arguments for the connection's security."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.security_protocol in SASL_PROTOCOLS:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        return options


class Broker(str):
    """A bootstrap address that knows how to connect to it (``config``)."""

    config: ClientConfig

    def __new__(cls, bootstrap: str, config: ClientConfig) -> Broker:
        made = super().__new__(cls, bootstrap)
        made.config = config
        return made

    def __getnewargs__(self) -> tuple[str, ClientConfig]:  # type: ignore[override]
        return (str(self), self.config)


def config_of(bootstrap: str) -> ClientConfig:
    if isinstance(bootstrap, Broker):
        return bootstrap.config
    return ClientConfig.from_environment()


def consumer_options(bootstrap: str) -> dict[str, Any]:
    """Address, security and the broker's fetch wait for an ``AIOKafkaConsumer``."""
    config = config_of(bootstrap)
    return {
        "bootstrap_servers": str(bootstrap),
        "fetch_max_wait_ms": config.fetch_wait_ms,
        **config.security(),
    }


def pace_fetches(consumer: AIOKafkaConsumer, bootstrap: str) -> None:
    """Give a started consumer the idle wait while its topics are quiet (the module's rules).

    aiokafka (pinned) reads ``Fetcher._fetch_max_wait_ms`` for each fetch request
    it builds, and ``_proc_fetch_request`` answers whether a fetch brought
    records: both are private, so this is the one place that relies on them
    (``tests/integration/test_fetch_pace.py`` fails if an upgrade moves them).
    """
    config = config_of(bootstrap)
    busy, idle = config.fetch_wait_ms, config.idle_fetch_wait_ms
    fetcher = consumer._fetcher
    if idle <= busy or fetcher is None:
        return
    fetch = fetcher._proc_fetch_request
    last_records = time.monotonic()

    async def paced(assignment: Any, node_id: int, request: Any) -> bool:
        nonlocal last_records
        brought = bool(await fetch(assignment, node_id, request))
        now = time.monotonic()
        if brought:
            last_records = now
            fetcher._fetch_max_wait_ms = busy
        elif now - last_records >= QUIET_SECONDS:
            fetcher._fetch_max_wait_ms = idle
        return brought

    fetcher._proc_fetch_request = paced


def producer_options(bootstrap: str) -> dict[str, Any]:
    return {"bootstrap_servers": str(bootstrap), **config_of(bootstrap).security()}


def admin_options(bootstrap: str) -> dict[str, Any]:
    return {"bootstrap_servers": str(bootstrap), **config_of(bootstrap).security()}


def faust_options(bootstrap: str) -> dict[str, Any]:
    """faust ``App`` settings: the broker URL and, when the broker wants them, credentials."""
    import faust

    config = config_of(bootstrap)
    options: dict[str, Any] = {"broker": f"kafka://{bootstrap}"}
    if config.security_protocol in SASL_PROTOCOLS:
        options["broker_credentials"] = faust.SASLCredentials(
            username=config.sasl_username,
            password=config.sasl_password,
            mechanism=config.sasl_mechanism,
            ssl_context=config.ssl_context(),
        )
    elif config.security_protocol == "SSL":
        options["broker_credentials"] = faust.SSLCredentials(config.ssl_context())
    return options
