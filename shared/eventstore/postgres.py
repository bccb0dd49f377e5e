"""PostgreSQL adapter (asyncpg).

How the global order never skips an event while appends commit concurrently
(a plain ``bigserial`` would let a reader pass position 7 while position 6 is
still in flight):

* An append runs as one call of a PL/pgSQL function, one round trip. Inside it,
  under a session advisory lock held for microseconds (not until commit), the
  transaction takes its transaction id and then its positions from a sequence.
  So among appends, a later transaction id always has later positions.
* Every row records its transaction id (``xid8``). A reader first asks for the
  oldest transaction still running (``pg_snapshot_xmin``), then, in a later
  statement, reads only rows whose transaction is older than that: those
  transactions have all ended, and every append still to commit has a younger
  id and therefore greater positions. What a reader returns is always a prefix
  of the final order.

Commits are not serialised, so concurrent appends share WAL flushes (group
commit); see bench/ for the figures.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from shared.events import NewEvent, RecordedEvent, actor_from_json, actor_to_json
from shared.eventstore.port import (
    AppendResult,
    ConcurrencyError,
    EventIdConflict,
    EventStore,
    ExpectedVersion,
    StreamState,
    validate_append,
)

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
# Arbitrary constant naming the advisory lock that orders position assignment.
_LOCK_KEY = 0x65766E74  # "evnt"
_ANY = -1
_NO_STREAM = 0


def _schema_sql(table: str) -> str:
    return f"""
CREATE SEQUENCE IF NOT EXISTS {table}_position_seq;
CREATE TABLE IF NOT EXISTS {table} (
    position        bigint      PRIMARY KEY,
    tx              xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL,
    stream          text        NOT NULL,
    stream_version  integer     NOT NULL,
    type            text        NOT NULL,
    schema_version  smallint    NOT NULL,
    occurred_at     timestamptz NOT NULL,
    correlation_id  uuid,
    causation_id    uuid,
    actor           jsonb       NOT NULL,
    data            jsonb       NOT NULL,
    CONSTRAINT {table}_event_id_key UNIQUE (event_id),
    CONSTRAINT {table}_stream_version_key UNIQUE (stream, stream_version)
);
CREATE OR REPLACE FUNCTION {table}_append(
    p_stream text, p_expected bigint, p_ids uuid[], p_types text[], p_schema smallint[],
    p_occurred timestamptz[], p_correlation uuid[], p_causation uuid[], p_actor jsonb[],
    p_data jsonb[]
) RETURNS TABLE (status text, version integer, last_position bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    n integer := cardinality(p_ids);
    current_version integer;
    positions bigint[];
BEGIN
    SELECT coalesce(max(e.stream_version), 0) INTO current_version
        FROM {table} e WHERE e.stream = p_stream;
    IF (p_expected = {_NO_STREAM} AND current_version <> 0)
       OR (p_expected > 0 AND current_version <> p_expected) THEN
        -- A re-sent append also lands here; the caller checks all its ids.
        IF EXISTS (SELECT 1 FROM {table} e WHERE e.event_id = p_ids[1]) THEN
            RETURN QUERY SELECT 'duplicate', current_version, NULL::bigint;
        ELSE
            RETURN QUERY SELECT 'conflict', current_version, NULL::bigint;
        END IF;
        RETURN;
    END IF;
    PERFORM pg_advisory_lock({_LOCK_KEY});
    BEGIN
        PERFORM pg_current_xact_id();
        SELECT array_agg(nextval('{table}_position_seq')) INTO positions
            FROM generate_series(1, n);
    EXCEPTION WHEN OTHERS THEN
        PERFORM pg_advisory_unlock({_LOCK_KEY});
        RAISE;
    END;
    PERFORM pg_advisory_unlock({_LOCK_KEY});
    INSERT INTO {table} (position, event_id, stream, stream_version, type, schema_version,
                         occurred_at, correlation_id, causation_id, actor, data)
    SELECT positions[i], p_ids[i], p_stream, current_version + i, p_types[i], p_schema[i],
           p_occurred[i], p_correlation[i], p_causation[i], p_actor[i], p_data[i]
    FROM generate_series(1, n) AS i;
    RETURN QUERY SELECT 'ok', current_version + n, positions[n];
END
$fn$;
"""


_HORIZON_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())"
_COLUMNS = (
    "position, stream, stream_version, event_id, type, schema_version, occurred_at, "
    "correlation_id, causation_id, actor::text, data::text"
)


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    # Positional on purpose: the columns are selected in the tuple's field order.
    return RecordedEvent(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
        actor_from_json(row[9]), orjson.loads(row[10]),
    )  # fmt: skip


def _expected_code(expected: ExpectedVersion) -> int:
    if expected is StreamState.ANY:
        return _ANY
    if expected is StreamState.NO_STREAM:
        return _NO_STREAM
    if expected < 1:
        raise ValueError("an exact expected version counts from 1")
    return expected


class PostgresEventStore(EventStore):
    """Event store in one PostgreSQL table (default ``events``)."""

    def __init__(self, pool: asyncpg.Pool, table: str = "events") -> None:
        super().__init__()
        if not _IDENT.match(table):
            raise ValueError(f"bad table name {table!r}")
        self._pool = pool
        self._table = table
        self._append_sql = (
            "SELECT status, version, last_position "
            f"FROM {table}_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )

    @classmethod
    async def open(cls, dsn: str, table: str = "events", pool_size: int = 10) -> PostgresEventStore:
        dsn = dsn.replace("postgresql+asyncpg://", "postgresql://", 1)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size)
        store = cls(pool, table)
        await store.create_schema()
        return store

    async def create_schema(self) -> None:
        # Serialise schema creation between replicas starting together.
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._table)
            await conn.execute(_schema_sql(self._table))

    async def close(self) -> None:
        await self._pool.close()

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        validate_append(stream, events)
        args = self._arguments(stream, events, _expected_code(expected_version))
        while True:
            try:
                row = await self._pool.fetchrow(self._append_sql, *args)
            except asyncpg.UniqueViolationError as exc:
                constraint = exc.constraint_name or ""
                if constraint.endswith("_event_id_key"):
                    # A concurrent copy of the same append won; answer from it.
                    return await self._duplicate_result(stream, events)
                if expected_version is StreamState.ANY:
                    continue  # another writer took the next version; "any" just retries
                actual = await self.stream_version(stream)
                raise ConcurrencyError(stream, expected_version, actual) from None
            assert row is not None
            status, version, position = row
            if status == "ok":
                self._notify_appended(position)
                return AppendResult(stream_version=version, position=position)
            if status == "conflict":
                raise ConcurrencyError(stream, expected_version, version)
            return await self._duplicate_result(stream, events)

    async def _duplicate_result(self, stream: str, events: Sequence[NewEvent]) -> AppendResult:
        ids = [e.event_id for e in events]
        rows = await self._pool.fetch(
            f"SELECT event_id, stream, stream_version, position FROM {self._table} "
            "WHERE event_id = ANY($1::uuid[]) ORDER BY position",
            ids,
        )
        found = [r["event_id"] for r in rows]
        versions = [r["stream_version"] for r in rows]
        same_append = (
            found == ids
            and all(r["stream"] == stream for r in rows)
            and versions == list(range(versions[0], versions[0] + len(ids)))
        )
        if not same_append:
            raise EventIdConflict(
                f"{len(found)} of {len(ids)} event ids already exist, "
                f"not as this append to {stream!r}"
            )
        return AppendResult(stream_version=versions[-1], position=rows[-1]["position"])

    @staticmethod
    def _arguments(stream: str, events: Sequence[NewEvent], expected: int) -> tuple[Any, ...]:
        return (
            stream,
            expected,
            [e.event_id for e in events],
            [e.type for e in events],
            [e.schema_version for e in events],
            [e.occurred_at for e in events],
            [e.correlation_id for e in events],
            [e.causation_id for e in events],
            [actor_to_json(e.actor) for e in events],
            [orjson.dumps(e.data).decode() for e in events],
        )

    async def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM {self._table} WHERE stream = $1 AND stream_version >= $2 "
            "ORDER BY stream_version LIMIT $3",
            stream,
            from_version,
            limit,
        )
        return [_recorded(r) for r in rows]

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        async with self._pool.acquire() as conn:
            # Two statements on purpose: the horizon must come from a snapshot
            # taken *before* the one that reads the rows (see module docstring).
            horizon = await conn.fetchval(_HORIZON_SQL)
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM {self._table} "
                "WHERE position > $1 AND tx < $2 ORDER BY position LIMIT $3",
                after,
                horizon,
                limit,
            )
        return [_recorded(r) for r in rows]

    async def stream_version(self, stream: str) -> int:
        value = await self._pool.fetchval(
            f"SELECT coalesce(max(stream_version), 0) FROM {self._table} WHERE stream = $1", stream
        )
        return int(value)

    async def head_position(self) -> int:
        async with self._pool.acquire() as conn:
            horizon = await conn.fetchval(_HORIZON_SQL)
            value = await conn.fetchval(
                f"SELECT max(position) FROM {self._table} WHERE tx < $1", horizon
            )
        return int(value or 0)

    async def count(self) -> int:
        return int(await self._pool.fetchval(f"SELECT count(*) FROM {self._table}"))
