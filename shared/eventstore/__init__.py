"""Event-store port and its adapters, chosen by URL (``EVENT_STORE_URL``).

* ``sqlite:///var/<service>.db``  – embedded default
* ``postgresql://user@host/db``   – production-grade, what CI tests hardest
* ``esdb://host:2113?tls=false``  – EventStoreDB / KurrentDB
* ``memory://``                   – in this process's memory, for tests of
  application rules only (never a production store)
"""

from __future__ import annotations

from shared.eventstore.port import (
    AppendResult,
    ConcurrencyError,
    EventIdConflict,
    EventStore,
    EventStoreError,
    ExpectedVersion,
    StreamState,
)

__all__ = [
    "AppendResult",
    "ConcurrencyError",
    "EventIdConflict",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "StreamState",
    "open_event_store",
]


async def open_event_store(url: str, namespace: str = "", pool_size: int = 10) -> EventStore:
    """Open the adapter the URL names, creating its schema when missing.

    ``namespace`` (the service's name) keeps services apart on a shared
    EventStoreDB server, where every stream is prefixed with it; SQLite and
    PostgreSQL stores are one database per service anyway. Each ``memory://``
    open is a new, empty store.
    """
    scheme = url.split("://", 1)[0]
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        from shared.eventstore.sqlite import SqliteEventStore

        return await SqliteEventStore.open(url)
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        from shared.eventstore.postgres import PostgresEventStore

        return await PostgresEventStore.open(url, pool_size=pool_size)
    if scheme in ("esdb", "esdb+discover", "kurrentdb", "kdb"):
        from shared.eventstore.esdb import EsdbEventStore

        return await EsdbEventStore.open(url, prefix=f"{namespace}-" if namespace else "")
    if scheme == "memory":
        from shared.eventstore.memory import MemoryEventStore

        return await MemoryEventStore.open(url)
    raise ValueError(f"EVENT_STORE_URL has an unknown scheme {scheme!r}")
