"""PostgreSQL adapter (asyncpg).

How the global order never skips an event while appends commit concurrently
(a plain ``bigserial`` would let a reader pass position 7 while position 6 is
still in flight):

* An append runs as one call of a PL/pgSQL function, one round trip. Inside it,
  under a session advisory lock held for microseconds (not until commit), the
  transaction takes its transaction id and then its positions from a sequence.
  So among appends, a later transaction id always has later positions (F1).
* Every row records its transaction id (``xid8``). A reader first computes a
  *horizon*, an id below which every append has ended, then, in a later
  statement, reads only rows whose transaction is older than the horizon: those
  appends have all ended, and every append still to commit has a younger id
  and therefore greater positions. What a reader returns is always a prefix of
  the final order.

The horizon depends on appends of this store only. ``pg_snapshot_xmin`` (the
oldest transaction still running) would be sound too, but it is cluster-wide:
a projection writing read-model rows, a consumer's inbox transaction or another
database on the same server would hold back every append that started after it.
Instead:

* The append function's first act is ``pg_advisory_xact_lock_shared(K1, K2)``,
  a lock ``L`` named after the table (``_appender_key``), taken while its
  transaction has no id yet (the function refuses to run in a transaction that
  has one), held until the transaction ends. Nobody takes ``L`` exclusively, so
  appends never wait for it.
* The horizon statement takes its snapshot ``S`` (at t0), then reads
  ``pg_locks`` once (at t1 >= t0; the statement's snapshot is taken before it
  runs). An id ``x`` in ``pg_snapshot_xip(S)`` is *proven not an append* when,
  in that one ``pg_locks`` picture, the transaction holding ``ExclusiveLock``
  on ``x`` holds no ``L`` in this database. The horizon is the smallest id of
  ``xip(S)`` not so proven, or ``pg_snapshot_xmax(S)`` when there is none.

Why nothing is skipped: let ``A`` be an append with id ``a`` below the horizon
``H``. As ``H <= xmax(S)``, either ``a`` is not in ``xip(S)``, and then ``A``
ended before t0 (that is what a snapshot says of ids below its xmax), or ``a``
was proven: at t1 ``A`` held the lock on its own id, so it had its id, and held
no ``L``. ``A`` took ``L`` before it had an id, and PostgreSQL releases a
transaction's locks only after the transaction has left the proc array (so
that new snapshots see it ended; xact.c, CommitTransaction/AbortTransaction),
hence ``A`` had ended by t1. Either way, the reading statement, whose snapshot
is taken after t1, sees all of ``A``'s rows; and by F1 every append with an
id >= ``H`` has greater positions than all of them. (So the rows must be read
in a later statement, not with ``S``: an append that ended between t0 and t1
may be proven, and ``S`` does not show its rows. Each statement runs in its own
transaction, so this holds at any isolation level.)

The races, one by one:

* An append that gets its id after t0 has an id >= ``xmax(S) >= H``: excluded.
* An append that ends between t0 and t1: proven or not, it has ended before
  the reading statement (above).
* A transaction publishes its id in the proc array just before it inserts the
  lock on it (xact.c, AssignTransactionId), so an id can be in ``xip(S)`` with
  no lock row at t1: not proven, kept.
* Only the lock's *owner* counts (``ExclusiveLock``, granted): a transaction
  that waits for ``x`` (``ShareLock`` on ``x``: say a non-append inserting a
  duplicate event id, or locking an event row) must not pass for ``x``.
* An append never has an id without holding ``L`` (until it ends): the
  function takes ``L``, then checks that its transaction has no id yet (an
  append inside a transaction that already wrote would break F1 as well).
* ``pg_locks`` is read once (a materialised CTE): advisory and transaction-id
  locks live in the main lock table, which ``pg_lock_status`` copies under all
  its partition locks at once, so ``L`` and the id lock come from one instant.
* Wrap-around: ``xip`` holds ``xid8``s, ``pg_locks`` 32-bit ids; they are
  matched on the low 32 bits, which identify an id uniquely among ids that can
  be running or locked at once (they lie within 2^31 of each other). ``H``
  stays an ``xid8`` and is compared with ``tx`` as one.
* A non-append that is not proven (ended just before t1, or between id and id
  lock) only makes ``H`` lower: late, never wrong. When ``xip(S)`` is empty,
  ``pg_locks`` is not read at all.

Upgrades: processes of the previous version call the function by name, so once
``create_schema`` has replaced it their appends take ``L`` too (their readers use
``pg_snapshot_xmin``, sound anyway). But an append call that started the previous
body (without ``L``) before the replacement may still run afterwards. So a store
reads with the ``pg_snapshot_xmin`` horizon until every transaction that was open
in this database when its ``create_schema`` committed has ended (checked on each
read, by their virtual transaction ids; usually none, or gone within
milliseconds), and only then switches to the horizon above. A store whose
``create_schema`` has not run keeps ``pg_snapshot_xmin``.

Commits are not serialised, so concurrent appends share WAL flushes (group
commit); see bench/ for the figures.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from shared.domain.events import NewEvent, RecordedEvent, actor_from_json, actor_to_json
from shared.eventstore.port import (
    STREAM_BUCKETS,
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


def _appender_key(table: str) -> int:
    """Second key of ``L``, the lock every append of ``table`` holds (first key: ``_LOCK_KEY``)."""
    return zlib.crc32(table.encode()) & 0x7FFFFFFF


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
    -- L, before this transaction has an id: readers know appends by it (module docstring).
    PERFORM pg_advisory_xact_lock_shared({_LOCK_KEY}, {_appender_key(table)});
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION '{table}_append must be the first write of its transaction';
    END IF;
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


_XMIN_HORIZON_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())"


def _horizon_sql(table: str) -> str:
    """The horizon of the module docstring, in one statement (one ``pg_locks`` read)."""
    return f"""
WITH locks AS MATERIALIZED (
    SELECT locktype, mode, granted, database, classid, objid, objsubid,
           transactionid, virtualtransaction
    FROM pg_catalog.pg_locks WHERE locktype IN ('transactionid', 'advisory')
)
SELECT coalesce(min(x), pg_snapshot_xmax(pg_current_snapshot()))
FROM pg_snapshot_xip(pg_current_snapshot()) AS x
WHERE NOT EXISTS (
    SELECT FROM locks o
    WHERE o.locktype = 'transactionid' AND o.mode = 'ExclusiveLock' AND o.granted
      AND o.transactionid::text::bigint = x::text::bigint % 4294967296
      AND NOT EXISTS (
          SELECT FROM locks l
          WHERE l.locktype = 'advisory' AND l.virtualtransaction = o.virtualtransaction
            AND l.classid = {_LOCK_KEY} AND l.objid = {_appender_key(table)} AND l.objsubid = 2
            AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                              WHERE d.datname = current_database())))
"""


# Transactions open in this database now, but for ours (see "Upgrades" above).
_OPEN_TRANSACTIONS_SQL = """
SELECT l.pid, l.virtualxid FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'virtualxid' AND l.mode = 'ExclusiveLock' AND l.granted
  AND l.pid <> pg_backend_pid() AND a.datname = current_database()
"""
_STILL_OPEN_SQL = """
SELECT EXISTS (
    SELECT FROM pg_catalog.pg_locks l
    JOIN unnest($1::int[], $2::text[]) AS o(pid, virtualxid)
      ON l.pid = o.pid AND l.virtualxid = o.virtualxid
    WHERE l.locktype = 'virtualxid' AND l.mode = 'ExclusiveLock' AND l.granted)
"""
_WALK_THE_INDEX = (
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
    "SET LOCAL enable_sort = off; SET LOCAL max_parallel_workers_per_gather = 0"
)
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
    return expected  # >= 1 (validate_append)


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
        self._horizon_sql = _horizon_sql(table)
        # Transactions open when create_schema committed, as (pids, virtual ids); None
        # until it has run. Until none of them runs, reads use pg_snapshot_xmin ("Upgrades").
        self._open_at_schema: tuple[list[int], list[str]] | None = None
        self._appends_only_horizon = False

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
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_OPEN_TRANSACTIONS_SQL)
        self._open_at_schema = ([r["pid"] for r in rows], [r["virtualxid"] for r in rows])
        self._appends_only_horizon = not rows

    async def _horizon(self, conn: asyncpg.Connection) -> int:
        """An ``xid8`` below which every append has ended (module docstring)."""
        if not self._appends_only_horizon:
            open_at_schema = self._open_at_schema
            if open_at_schema is None or await conn.fetchval(_STILL_OPEN_SQL, *open_at_schema):
                return int(await conn.fetchval(_XMIN_HORIZON_SQL))
            self._appends_only_horizon = True
        return int(await conn.fetchval(self._horizon_sql))

    async def close(self) -> None:
        await self._stop_watching()
        await self._pool.close()

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        validate_append(stream, events, expected_version)
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
                self._notify_appended(position, len(events))
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
            horizon = await self._horizon(conn)
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM {self._table} "
                "WHERE position > $1 AND tx < $2 ORDER BY position LIMIT $3",
                after,
                horizon,
                limit,
            )
        return [_recorded(r) for r in rows]

    async def read_part(
        self,
        after: int,
        until: int,
        limit: int = 1000,
        *,
        buckets: tuple[int, int] | None = None,
        types: frozenset[str] | None = None,
    ) -> list[RecordedEvent]:
        # Filtered here, so a process reads only its part. No horizon: everything up
        # to ``until`` (a head position) has committed.
        conditions = ["position > $1", "position <= $2"]
        args: list[object] = [after, until]
        if buckets is not None:
            bucket = f"(hashtext(stream) & 2147483647) % {STREAM_BUCKETS}"
            conditions.append(f"{bucket} >= ${len(args) + 1} AND {bucket} < ${len(args) + 2}")
            args += list(buckets)
        if types is not None:
            conditions.append(f"type = ANY(${len(args) + 1}::text[])")
            args.append(sorted(types))
        async with self._pool.acquire() as conn, conn.transaction():
            # The planner cannot know that the filter keeps a good share of the rows,
            # and would sort the whole rest of the log for each page: walk the
            # position index instead, and stop at ``limit`` rows kept.
            await conn.execute(_WALK_THE_INDEX)
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM {self._table} WHERE {' AND '.join(conditions)} "
                f"ORDER BY position LIMIT ${len(args) + 1}",
                *args,
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
            horizon = await self._horizon(conn)
            value = await conn.fetchval(
                f"SELECT max(position) FROM {self._table} WHERE tx < $1", horizon
            )
        return int(value or 0)

    async def count(self) -> int:
        return int(await self._pool.fetchval(f"SELECT count(*) FROM {self._table}"))
