"""Event-store benchmarks: our adapters beside the ``eventsourcing`` library and raw COPY.

Run ``python -m bench.run [--events N] [--repeat N] [--only SECTIONS] [--smoke]
[--no-write]`` (or ``make bench``), which then runs every other section (authz,
access, tickets, console, notifier, mail, replay). Every system gets a fresh database or file,
a warm-up that is not counted, then the same seeded workload: batches of 10
events, each batch to a new stream, 4 concurrent writers. Rounds are
interleaved (ours, the peer, COPY; again), each ratio is taken within its round
and reported as the median of the per-round ratios (``bench.goals``). Figures
go to ``bench/results.json`` (a flat object merged with what other sections
wrote; a figure with a goal also gets ``.goal`` and ``.met``), human context to
``bench/results.meta.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import importlib.metadata
import itertools
import json
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeElapsedColumn

from bench import access_latency, authz, brokers, goals, idle_cpu
from bench import console as console_bench
from bench import mail as mail_bench
from bench import notifier as notifier_bench
from bench import replay as replay_bench
from bench import tickets as support_center
from shared.domain.events import Actor, NewEvent
from shared.eventstore import StreamState
from shared.eventstore.postgres import PostgresEventStore
from shared.eventstore.sqlite import SqliteEventStore
from shared.messaging.relay import Relay
from shared.readmodel.database import ReadModelDB

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "results.json"
DEFAULT_DSN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

BATCH_SIZE = 10
WRITERS = 4
WARMUP_EVENTS = 1_000
READ_PAGE = 5_000
SEED = 20_240_601
# What an eventsourcing application would store as the topic of such an event.
ES_TOPIC = "services.tickets.domain:Ticket.Opened"
# Fixed names so a crashed run's leftovers are dropped by the next run.
DB_OURS = "bench_es_ours"
DB_EVENTSOURCING = "bench_es_eventsourcing"
DB_RELAY = "bench_relay"
DB_COPY = "bench_es_copy"

SUBJECTS = (
    "Mailbox full",
    "DNS not resolving",
    "SSL renewal failed",
    "Backup restore request",
    "Invoice question",
    "Cannot log in to panel",
    "Upgrade VPS plan",
    "PHP version change",
)
PRIORITIES = ("low", "normal", "high", "urgent")

# Same columns as the store's ``events`` table, minus ``tx`` that its function fills.
COPY_COLUMNS = (
    "position",
    "event_id",
    "stream",
    "stream_version",
    "type",
    "schema_version",
    "occurred_at",
    "correlation_id",
    "causation_id",
    "actor",
    "data",
)
COPY_TABLE_SQL = """
CREATE TABLE {table} (
    position        bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    stream          text        NOT NULL,
    stream_version  integer     NOT NULL,
    type            text        NOT NULL,
    schema_version  smallint    NOT NULL,
    occurred_at     timestamptz NOT NULL,
    correlation_id  uuid,
    causation_id    uuid,
    actor           jsonb       NOT NULL,
    data            jsonb       NOT NULL
)
"""

console = Console()


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True, slots=True)
class Batch:
    """One append: events 1..n of a stream that does not exist yet."""

    stream_id: uuid.UUID
    events: list[NewEvent]

    @property
    def stream(self) -> str:
        return f"ticket-{self.stream_id}"


@dataclass(frozen=True, slots=True)
class Workload:
    """Warm-up and timed batches, generated from a seed so every run writes the same bytes."""

    warmup: list[Batch]
    timed: list[Batch]

    @property
    def events(self) -> int:
        return sum(len(b.events) for b in self.timed)

    @property
    def warmup_events(self) -> int:
        return sum(len(b.events) for b in self.warmup)

    def payload_bytes(self) -> float:
        """Mean size of the JSON payload (``data``) of the timed events."""
        sizes = [len(_dumps(e.data)) for b in self.timed for e in b.events]
        return sum(sizes) / len(sizes)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _batches(rng: random.Random, events: int, actors: Sequence[Actor]) -> list[Batch]:
    base = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    departments = [str(_uuid(rng)) for _ in range(12)]
    batches: list[Batch] = []
    for n in range((events + BATCH_SIZE - 1) // BATCH_SIZE):
        batch_events = [
            NewEvent(
                type="TicketOpened",
                data={
                    "subject": rng.choice(SUBJECTS),
                    "department_id": rng.choice(departments),
                    "client_id": str(_uuid(rng)),
                    "priority": rng.choice(PRIORITIES),
                },
                event_id=_uuid(rng),
                occurred_at=base + timedelta(seconds=n, microseconds=i),
                correlation_id=_uuid(rng),
                actor=rng.choice(actors),
            )
            for i in range(BATCH_SIZE)
        ]
        batches.append(Batch(stream_id=_uuid(rng), events=batch_events))
    return batches


def make_workload(events: int) -> Workload:
    """The seeded workload of ``events`` timed events (rounded up to whole batches)."""
    rng = random.Random(SEED)
    actors = [Actor(id=str(_uuid(rng)), kind="client") for _ in range(50)]
    return Workload(
        warmup=_batches(rng, WARMUP_EVENTS, actors), timed=_batches(rng, events, actors)
    )


def stored_events(batch: Batch) -> list[StoredEvent]:
    """The batch as eventsourcing would store it: same aggregate id, versions, payload bytes."""
    return [
        StoredEvent(
            originator_id=batch.stream_id,
            originator_version=version,
            topic=ES_TOPIC,
            state=_dumps(event.data),
        )
        for version, event in enumerate(batch.events, start=1)
    ]


# --------------------------------------------------------------------------- runners


class Meter:
    """Progress bars shared by all phases; one task per phase."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def task(self, description: str, total: int) -> TaskID:
        return self._progress.add_task(description, total=total)

    def advance(self, task: TaskID, events: int) -> None:
        self._progress.advance(task, events)

    def done(self, task: TaskID, seconds: float, events: int) -> None:
        rate = events / seconds
        self._progress.update(
            task, description=f"{self._progress.tasks[task].description} [green]{rate:,.0f} ev/s"
        )


def _shares(batches: Sequence[Batch]) -> list[Sequence[Batch]]:
    # Interleaved slices give each writer the same number of batches.
    return [batches[w::WRITERS] for w in range(WRITERS)]


async def run_async_writers(
    batches: Sequence[Batch],
    append: Callable[[Batch], Awaitable[object]],
    meter: Meter,
    task: TaskID,
) -> float:
    """Seconds for ``WRITERS`` asyncio tasks to append all batches."""

    async def writer(share: Sequence[Batch]) -> None:
        for batch in share:
            await append(batch)
            meter.advance(task, len(batch.events))

    # Collect the garbage of the previous phase now, not inside the timed one.
    gc.collect()
    start = time.perf_counter()
    await asyncio.gather(*(writer(share) for share in _shares(batches)))
    return time.perf_counter() - start


def run_thread_writers(
    batches: Sequence[Batch],
    insert: Callable[[list[StoredEvent]], object],
    meter: Meter,
    task: TaskID,
) -> float:
    """Seconds for ``WRITERS`` threads to insert all batches (the peer library is sync).

    Each batch is serialised inside the timed loop (payload to JSON bytes, the
    library's ``StoredEvent``), as our adapter serialises inside ``append``.
    """
    shares = _shares(batches)

    def writer(share: Sequence[Batch]) -> None:
        for batch in share:
            events = stored_events(batch)
            insert(events)
            meter.advance(task, len(events))

    gc.collect()
    with ThreadPoolExecutor(WRITERS) as pool:
        start = time.perf_counter()
        futures = [pool.submit(writer, share) for share in shares]
        for future in futures:
            future.result()
        return time.perf_counter() - start


# --------------------------------------------------------------------------- postgres


def _database_dsn(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def create_database(dsn: str, name: str) -> str:
    """A fresh, empty database; returns its DSN."""
    await _admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    return _database_dsn(dsn, name)


async def drop_database(dsn: str, name: str) -> None:
    await _admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settle_statements(analyze: bool) -> list[str]:
    """What runs between a system's warm-up and its timed phase."""
    # CHECKPOINT flushes the warm-up's dirty pages, so that a checkpoint does not
    # land in one system's timed phase and not in another's. ANALYZE (--analyze)
    # gives the fresh tables the statistics autovacuum gives a long-running
    # service; without it, plans cached while a table was empty stay in use.
    return ["ANALYZE", "CHECKPOINT"] if analyze else ["CHECKPOINT"]


async def server_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def time_read_all(
    read: Callable[[int, int], Awaitable[list[Any]]], total: int, meter: Meter, task: TaskID
) -> float:
    """Seconds to read the whole log in ``READ_PAGE`` pages; checks nothing is missing."""
    await read(0, WARMUP_EVENTS)  # warm the statement cache and the pages, not counted
    gc.collect()
    after, seen = 0, 0
    start = time.perf_counter()
    while page := await read(after, READ_PAGE):
        after = page[-1].position
        seen += len(page)
        meter.advance(task, len(page))
    seconds = time.perf_counter() - start
    if seen != total:
        raise RuntimeError(f"read_all returned {seen} events, expected {total}")
    return seconds


async def bench_ours_postgres(
    dsn: str, work: Workload, meter: Meter, *, analyze: bool
) -> dict[str, float]:
    """Our PostgreSQL adapter: appends, then a catch-up read of the whole log."""
    db = await create_database(dsn, DB_OURS)
    try:
        store = await PostgresEventStore.open(db, pool_size=WRITERS)
        try:

            async def append(batch: Batch) -> object:
                return await store.append(
                    batch.stream, batch.events, expected_version=StreamState.NO_STREAM
                )

            warm = meter.task("postgres  ours           warm-up", work.warmup_events)
            await run_async_writers(work.warmup, append, meter, warm)
            await _admin(db, *settle_statements(analyze))
            task = meter.task("postgres  ours           append ", work.events)
            seconds = await run_async_writers(work.timed, append, meter, task)
            meter.done(task, seconds, work.events)
            total = work.events + work.warmup_events
            if await store.count() != total:
                raise RuntimeError("the PostgreSQL store does not hold every appended event")
            # A catch-up read (a rebuild, a new consumer) runs over a settled log, whose
            # pages VACUUM has already marked all-visible; reading rows seconds after
            # they were written also pays for setting their hint bits.
            await _admin(db, "VACUUM ANALYZE events")
            read_task = meter.task("postgres  ours           read_all", total)
            read_seconds = await time_read_all(store.read_all, total, meter, read_task)
            meter.done(read_task, read_seconds, total)
        finally:
            await store.close()
    finally:
        await drop_database(dsn, DB_OURS)
    return {
        "event_store.postgres.append_events_per_s": work.events / seconds,
        "event_store.postgres.read_all_events_per_s": total / read_seconds,
    }


def _eventsourcing_postgres(db: str, work: Workload, meter: Meter, analyze: bool) -> float:
    parts = urlsplit(db)
    datastore = PostgresDatastore(
        dbname=parts.path.lstrip("/"),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or "",
        pool_size=WRITERS,
    )
    try:
        recorder = PostgresApplicationRecorder(datastore)
        recorder.create_table()
        warm = meter.task("postgres  eventsourcing  warm-up", work.warmup_events)
        run_thread_writers(work.warmup, recorder.insert_events, meter, warm)
        with datastore.get_connection() as conn:
            for statement in settle_statements(analyze):
                conn.execute(statement)
        task = meter.task("postgres  eventsourcing  append ", work.events)
        seconds = run_thread_writers(work.timed, recorder.insert_events, meter, task)
        meter.done(task, seconds, work.events)
        with datastore.get_connection() as conn:
            row = conn.execute("SELECT count(*) AS n FROM stored_events").fetchone()
        if row is None or row["n"] != work.events + work.warmup_events:
            raise RuntimeError("eventsourcing's table does not hold every inserted event")
        return seconds
    finally:
        datastore.close()


async def bench_eventsourcing_postgres(
    dsn: str, work: Workload, meter: Meter, *, analyze: bool
) -> float:
    """Seconds for eventsourcing's ``PostgresApplicationRecorder`` to insert the timed batches."""
    db = await create_database(dsn, DB_EVENTSOURCING)
    try:
        return await asyncio.to_thread(_eventsourcing_postgres, db, work, meter, analyze)
    finally:
        await drop_database(dsn, DB_EVENTSOURCING)


def _copy_rows(batch: Batch, positions: itertools.count[int]) -> list[tuple[Any, ...]]:
    # The same per-event conversion our adapter does (JSON text for actor and data).
    return [
        (
            next(positions),
            e.event_id,
            batch.stream,
            version,
            e.type,
            e.schema_version,
            e.occurred_at,
            e.correlation_id,
            e.causation_id,
            json.dumps(e.actor.to_dict()),
            json.dumps(e.data, ensure_ascii=False),
        )
        for version, e in enumerate(batch.events, start=1)
    ]


async def bench_copy_postgres(
    dsn: str, work: Workload, meter: Meter, *, analyze: bool
) -> dict[str, float]:
    """Raw asyncpg COPY into an unindexed table: per batch by 4 writers, and once in bulk."""
    db = await create_database(dsn, DB_COPY)
    try:
        pool = await asyncpg.create_pool(db, min_size=WRITERS, max_size=WRITERS)
        try:
            await pool.execute(COPY_TABLE_SQL.format(table="copy_batched"))
            await pool.execute(COPY_TABLE_SQL.format(table="copy_bulk"))
            positions = itertools.count(1)

            async def append(batch: Batch) -> object:
                rows = _copy_rows(batch, positions)
                async with pool.acquire() as conn:
                    return await conn.copy_records_to_table(
                        "copy_batched", records=rows, columns=COPY_COLUMNS
                    )

            warm = meter.task("postgres  COPY           warm-up", work.warmup_events)
            await run_async_writers(work.warmup, append, meter, warm)
            await _admin(db, *settle_statements(analyze))
            task = meter.task("postgres  COPY           batched", work.events)
            seconds = await run_async_writers(work.timed, append, meter, task)
            meter.done(task, seconds, work.events)

            bulk_task = meter.task("postgres  COPY           bulk   ", work.events)
            bulk_positions = itertools.count(1)
            gc.collect()
            async with pool.acquire() as conn:
                start = time.perf_counter()
                rows = [r for b in work.timed for r in _copy_rows(b, bulk_positions)]
                await conn.copy_records_to_table("copy_bulk", records=rows, columns=COPY_COLUMNS)
                bulk_seconds = time.perf_counter() - start
            meter.advance(bulk_task, work.events)
            meter.done(bulk_task, bulk_seconds, work.events)
        finally:
            await pool.close()
    finally:
        await drop_database(dsn, DB_COPY)
    return {
        "event_store.postgres.copy_batched_events_per_s": work.events / seconds,
        "event_store.postgres.copy_bulk_events_per_s": work.events / bulk_seconds,
    }


# --------------------------------------------------------------------------- sqlite


def sqlite_checkpoint(path: Path) -> None:
    # Fold the warm-up's WAL into the database so both systems start timed
    # appends from an empty WAL.
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def bench_ours_sqlite(path: Path, work: Workload, meter: Meter) -> dict[str, float]:
    """Our SQLite adapter (synchronous=FULL): appends, then a catch-up read."""
    store = await SqliteEventStore.open(str(path), synchronous="FULL")
    try:

        async def append(batch: Batch) -> object:
            return await store.append(
                batch.stream, batch.events, expected_version=StreamState.NO_STREAM
            )

        warm = meter.task("sqlite    ours           warm-up", work.warmup_events)
        await run_async_writers(work.warmup, append, meter, warm)
        await asyncio.to_thread(sqlite_checkpoint, path)
        task = meter.task("sqlite    ours           append ", work.events)
        seconds = await run_async_writers(work.timed, append, meter, task)
        meter.done(task, seconds, work.events)
        total = work.events + work.warmup_events
        if await store.count() != total:
            raise RuntimeError("the SQLite store does not hold every appended event")
        read_task = meter.task("sqlite    ours           read_all", total)
        read_seconds = await time_read_all(store.read_all, total, meter, read_task)
        meter.done(read_task, read_seconds, total)
    finally:
        await store.close()
    return {
        "event_store.sqlite.append_events_per_s": work.events / seconds,
        "event_store.sqlite.read_all_events_per_s": total / read_seconds,
    }


def bench_eventsourcing_sqlite(path: Path, work: Workload, meter: Meter) -> float:
    """Seconds for eventsourcing's ``SQLiteApplicationRecorder`` (a file, WAL) to insert."""
    datastore = SQLiteDatastore(str(path), pool_size=WRITERS)
    try:
        recorder = SQLiteApplicationRecorder(datastore)
        recorder.create_table()
        warm = meter.task("sqlite    eventsourcing  warm-up", work.warmup_events)
        run_thread_writers(work.warmup, recorder.insert_events, meter, warm)
        sqlite_checkpoint(path)
        task = meter.task("sqlite    eventsourcing  append ", work.events)
        seconds = run_thread_writers(work.timed, recorder.insert_events, meter, task)
        meter.done(task, seconds, work.events)
    finally:
        datastore.close()
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT count(*) FROM stored_events").fetchone()
    finally:
        conn.close()
    if count != work.events + work.warmup_events:
        raise RuntimeError("eventsourcing's SQLite table does not hold every inserted event")
    return seconds


# --------------------------------------------------------------------------- relay slot


async def bench_relay(
    dsn: str, work: Workload, meter: Meter, broker: str = "tansu"
) -> dict[str, float]:
    """Store to broker: ``relay.kafka_events_per_s``, every message acknowledged.

    The events are appended first (not timed); then one relay publishes the
    whole log from a PostgreSQL store to a real Kafka-protocol broker
    (``KAFKA_BOOTSTRAP_SERVERS`` if set, else a Tansu broker on a free port; with
    ``broker="apache_kafka"`` a real Apache Kafka: ``relay.apache_kafka.…``) and
    the clock stops when the last page is acknowledged and checkpointed.
    """
    db_url = await create_database(dsn, DB_RELAY)
    try:
        store = await PostgresEventStore.open(db_url, pool_size=WRITERS)
        read_models = await ReadModelDB.open(db_url)
        try:

            async def append(batch: Batch) -> object:
                return await store.append(batch.stream, batch.events)

            fill = meter.task("relay     store          fill   ", work.events)
            await run_async_writers(work.timed, append, meter, fill)
            with contextlib.ExitStack() as stack:
                bootstrap, _ = stack.enter_context(brokers.running_broker(broker))
                relay = Relay(store, read_models, bootstrap, f"bench-{uuid.uuid4().hex[:8]}.events")
                task = meter.task(f"relay     →{broker[:12]:<12} publish", work.events)
                start = time.perf_counter()
                sent = await relay.publish_pending()
                seconds = time.perf_counter() - start
                meter.advance(task, sent)
                meter.done(task, seconds, sent)
            if sent != work.events:
                raise RuntimeError(f"the relay published {sent} events, expected {work.events}")
        finally:
            await read_models.close()
            await store.close()
    finally:
        await drop_database(dsn, DB_RELAY)
    return {brokers.figure_name("relay.kafka_events_per_s", broker): work.events / seconds}


# --------------------------------------------------------------------------- output


def merge_json(path: Path, updates: dict[str, Any]) -> None:
    """Overwrite ``updates``' keys in the JSON object at ``path``, keeping all other keys."""
    current: dict[str, Any] = {}
    if path.exists():
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            current = loaded
    current.update(updates)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(current.items())), indent=2) + "\n")


# --------------------------------------------------------------------------- main


async def run(
    dsn: str, events: int, *, analyze: bool = False
) -> tuple[dict[str, float], dict[str, Any]]:
    """Measure every system; returns the figures and the human context."""
    work = make_workload(events)
    # Other work on this machine or PostgreSQL server skews the figures; the
    # load average in the meta file says whether a run was alone.
    load_before = os.getloadavg()
    started = time.perf_counter()
    results: dict[str, float] = {}
    es_seconds: dict[str, float] = {}
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        # Few redraws: the refresh thread competes with the writers for 2 cores.
        refresh_per_second=2,
    )
    with progress:
        meter = Meter(progress)
        results.update(await bench_ours_postgres(dsn, work, meter, analyze=analyze))
        es_seconds["postgres"] = await bench_eventsourcing_postgres(
            dsn, work, meter, analyze=analyze
        )
        results.update(await bench_copy_postgres(dsn, work, meter, analyze=analyze))
        with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
            results.update(await bench_ours_sqlite(Path(tmp) / "ours.db", work, meter))
            es_seconds["sqlite"] = await asyncio.to_thread(
                bench_eventsourcing_sqlite, Path(tmp) / "eventsourcing.db", work, meter
            )
        for broker in brokers.BROKERS:  # the same log to each broker, in the same run
            results.update(await bench_relay(dsn, work, meter, broker))
    for system, seconds in es_seconds.items():
        peer = work.events / seconds
        results[f"event_store.{system}.eventsourcing_append_events_per_s"] = peer
        ours = results[f"event_store.{system}.append_events_per_s"]
        results[f"event_store.{system}.append_vs_eventsourcing"] = ours / peer
    results["event_store.postgres.append_vs_copy"] = (
        results["event_store.postgres.append_events_per_s"]
        / results["event_store.postgres.copy_batched_events_per_s"]
    )
    results.update(
        {
            "event_store.bench.events": float(work.events),
            "event_store.bench.batch_size": float(BATCH_SIZE),
            "event_store.bench.writers": float(WRITERS),
            "event_store.bench.payload_bytes": work.payload_bytes(),
            "event_store.bench.analyze_after_warmup": float(analyze),
        }
    )
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": work.events,
        "warmup_events": work.warmup_events,
        "batch_size": BATCH_SIZE,
        "writers": WRITERS,
        "read_page": READ_PAGE,
        "analyze_after_warmup": analyze,
        "seed": SEED,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "postgres_server": await server_version(dsn),
        "sqlite": sqlite3.sqlite_version,
        "eventsourcing": importlib.metadata.version("eventsourcing"),
        "asyncpg": importlib.metadata.version("asyncpg"),
        "runtime_s": round(time.perf_counter() - started, 1),
        "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
        "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
    }
    return results, meta


def median_of_rounds(rounds: Sequence[dict[str, float]]) -> dict[str, float]:
    """One figure per name from interleaved rounds: each ratio taken within its round
    (ours and the peer ran back to back), then the median of those per-round ratios;
    every rate the median of its rounds. A ratio never pairs two different rounds."""
    figures = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    for system in ("postgres", "sqlite"):
        figures[f"event_store.{system}.append_vs_eventsourcing"] = goals.median_ratio(
            [r[f"event_store.{system}.append_events_per_s"] for r in rounds],
            [r[f"event_store.{system}.eventsourcing_append_events_per_s"] for r in rounds],
        )
    figures["event_store.postgres.append_vs_copy"] = goals.median_ratio(
        [r["event_store.postgres.append_events_per_s"] for r in rounds],
        [r["event_store.postgres.copy_batched_events_per_s"] for r in rounds],
    )
    return figures


SECTIONS = (
    "event_store", "authz", "access", "idle_cpu", "tickets", "console", "notifier", "mail",
    "replay",
)  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    """How much each section does: the documented figures, or a smoke run's tiny sizes."""

    authz_staff: int = authz.STAFF
    authz_queries: int = authz.QUERIES
    access_rounds: int = 200
    idle_seconds: float = 30.0
    idle_settle: float = 10.0
    opens: int = 3_000
    queue_requests: int = 1_000
    queue_tickets: int = support_center.QUEUE_TICKETS
    console_tickets: int = console_bench.QUEUE_TICKETS
    console_requests: int = console_bench.REQUESTS
    replies: int = 200
    burst: int = 300
    inbound_mails: int = 1_000
    inbound_latency_mails: int = 200
    replay_events: int = replay_bench.EVENTS


# Proves every section works end to end in a few seconds each; never written.
SMOKE = Sizes(
    authz_staff=500,
    authz_queries=2_000,
    access_rounds=5,
    idle_seconds=3.0,
    idle_settle=2.0,
    opens=100,
    queue_requests=50,
    queue_tickets=5_000,
    console_tickets=5_000,
    console_requests=20,
    replies=5,
    burst=20,
    inbound_mails=40,
    inbound_latency_mails=10,
    replay_events=5_000,
)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, run, print the table and write the JSON files."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--events", type=int, help="timed events per system (default 50,000; --smoke: 2,000)"
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL server (admin DSN)")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results JSON")
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="ANALYZE the PostgreSQL tables after each warm-up (steady-state statistics)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="interleaved rounds (event store, authz); each ratio is the median of the"
        " per-round ratios (default 3)",
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"sections to run, of {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes in every section (implies --no-write)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 2_000 if args.smoke else 50_000
    if args.events < BATCH_SIZE * WRITERS:
        parser.error(f"--events must be at least {BATCH_SIZE * WRITERS}")
    only = set(args.only.split(","))
    if only - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(only - set(SECTIONS)))}")
    sizes = SMOKE if args.smoke else Sizes()
    results: dict[str, float] = {}
    meta: dict[str, Any] = {}
    started = time.perf_counter()
    if "event_store" in only:
        rounds = []
        for round_number in range(1, args.repeat + 1):
            console.rule(f"event store: round {round_number} of {args.repeat}")
            rounds.append(asyncio.run(run(args.dsn, args.events, analyze=args.analyze)))
        results.update(median_of_rounds([figures for figures, _ in rounds]))
        meta["event_store"] = rounds[-1][1]
        meta["event_store"]["rounds"] = args.repeat
        meta["event_store"]["runtime_s"] = round(sum(m["runtime_s"] for _, m in rounds), 1)
    if "authz" in only:
        console.rule(f"authorization checks ({sizes.authz_staff:,} staff, 50 departments)")
        results.update(authz.run(sizes.authz_queries, args.repeat, sizes.authz_staff))
    if "access" in only:
        console.rule("access changes between services (identity, departments: real processes)")
        results.update(access_latency.run(rounds=sizes.access_rounds))
        console.rule("access changes between services on Apache Kafka")
        results.update(access_latency.run(rounds=sizes.access_rounds, broker="apache_kafka"))
    if "idle_cpu" in only:
        console.rule(
            "idle CPU of the whole stack (five services, SMTP sink, broker) on each broker"
        )
        results.update(idle_cpu.run(seconds=sizes.idle_seconds, settle=sizes.idle_settle))
    if "tickets" in only:
        console.rule("support center (identity, departments, clients, tickets: real processes)")
        ticket_figures, meta["tickets"] = support_center.run(
            sizes.opens, sizes.queue_requests, queue_tickets=sizes.queue_tickets
        )
        results.update(ticket_figures)
    if "console" in only:
        console.rule("console pages beside the API calls they wrap (real processes)")
        console_figures, meta["console"] = console_bench.run(
            sizes.console_tickets, sizes.console_requests
        )
        results.update(console_figures)
    if "notifier" in only:
        console.rule("notifier (a client's reply to the mail in an SMTP server)")
        results.update(notifier_bench.run(sizes.replies, sizes.burst))
    if "mail" in only:
        console.rule("mail gateway (mails into tickets over SMTP, beside a bare aiosmtpd INSERT)")
        for broker in brokers.BROKERS:  # Tansu (the goals' names), then Apache Kafka
            mail_figures, meta[brokers.figure_name("mail.", broker).rstrip(".")] = mail_bench.run(
                sizes.inbound_mails, sizes.inbound_latency_mails, broker=broker
            )
            results.update(mail_figures)
    if "replay" in only:
        console.rule(f"replay (every read model rebuilt from {sizes.replay_events:,} events)")
        replay_figures, meta["replay"] = replay_bench.run(sizes.replay_events)
        results.update(replay_figures)
    goals.print_table(results, "Ratios first (ours / reference, same run), with their goals")
    if args.no_write or args.smoke:
        console.print(f"not written (--no-write or --smoke), {time.perf_counter() - started:.0f} s")
        return
    merge_json(args.output, goals.with_goals(goals.rounded(results)))
    merge_json(args.output.with_name(args.output.stem + ".meta.json"), meta)
    console.print(f"wrote {args.output} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
