"""Rebuilding read models from the log: every projection of a service in one pass.

``ProjectionRunner.rebuild`` replays the log into one projection; a service
with four read models would read its log four times. ``rebuild_all`` drops
them all, then reads each page once and applies it to every projection in one
transaction that also moves each one's checkpoint (so a crash mid-way leaves
every read model at the same, consistent position, and a restart of the
service simply continues from there). The next page is read while the current
one is applied: the store's database works while Python applies.

``rebuild_logs`` spreads the work over several processes (one core each,
``plan_all``). A big log feeding mostly ``partitionable`` read models is split
by stream: each process reads its part (``EventStore.read_part``) and applies
it to all of them, each part with its own checkpoints, the read models marked
unfinished until every part has ended (a service's start rebuilds one still
marked). Other logs' read models are split into groups of similar cost
(``Projection.rebuild_cost``), each group one ``RebuildJob`` that reads the log
for itself and runs ``rebuild_all``. The jobs of every service run side by
side, the biggest first. A read model moves in one transaction per page with
its checkpoint, so a crash leaves each one consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import multiprocessing
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing.queues import SimpleQueue
from typing import Any, cast

from sqlalchemy import Connection, Index, Table, text

from shared import catalogue
from shared.domain.events import RecordedEvent
from shared.eventstore import EventStore, open_event_store
from shared.eventstore.port import STREAM_BUCKETS
from shared.names import checkpoint_name, partition_checkpoint_name, unfinished_rebuild_name
from shared.projections.runner import Progress, Projection, clear_read_model, split_rebuild_rows
from shared.readmodel.database import (
    ReadModelDB,
    add_primary_key,
    checkpoints,
    drop_primary_key,
    save_checkpoint,
)

REBUILD_PAGE = 20_000
"""Events per page of a rebuild: sums collapse over more events per write, and the
rows of a stream's events mostly land in one page (measured: 5,000 cost about 10 %
more CPU). ``shredding.open_event`` remembers at least a page's openings."""
READ_COST = 6.0
"""Microseconds of CPU to read and unpack one event (``rebuild_cost``'s unit), measured."""
INDEX_BUILD_MEMORY = "256MB"
"""``maintenance_work_mem`` of a rebuild's index builds (PostgreSQL; the default is
64MB): a GIN index over the timelines' texts then sorts its entries in a few runs
instead of flushing many small ones. At most one build per pooled connection."""


async def drop(db: ReadModelDB, projections: Sequence[Projection]) -> None:
    """Drop the projections' tables and checkpoints, then create the tables empty,
    without their secondary indexes, nor the primary keys of the tables they only
    add rows to (``build_indexes`` makes them once filled)."""
    async with db.transaction() as conn:
        for projection in projections:
            await clear_read_model(conn, projection)
    for projection in projections:
        for metadata in projection.reads:
            await db.create_tables(metadata)
        await db.create_tables(projection.metadata)
    async with db.transaction() as conn:
        for index in _indexes(projections):
            await conn.run_sync(index.drop)
        if db.dialect == "postgresql":
            for table in _keyed_after_load(projections):
                await conn.run_sync(drop_primary_key, table)


async def build_indexes(db: ReadModelDB, projections: Sequence[Projection]) -> None:
    """The secondary indexes and primary keys ``drop`` left out, each built in one pass
    over the filled table: cheaper than keeping them up to date row by row. Should a
    rebuild stop before this, the service's start creates the missing ones
    (``ReadModelDB.create_tables``)."""
    if db.dialect != "postgresql":
        async with db.transaction() as conn:
            for index in _indexes(projections):
                await conn.run_sync(index.create)
        return

    builds: list[tuple[Table, Callable[[Connection], None]]] = [
        *((t, partial(add_primary_key, table=t)) for t in _keyed_after_load(projections)),
        *((cast(Table, index.table), index.create) for index in _indexes(projections)),
    ]
    async with db.reading() as conn:
        sizes = await conn.run_sync(_table_sizes, {table for table, _ in builds})

    async def build(make: Callable[[Connection], None]) -> None:
        async with db.transaction() as conn:
            await conn.execute(text(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'"))
            await conn.run_sync(make)

    # Side by side, as many at once as the pool has connections (one core each), those
    # of the biggest tables first: the last to start are then short ones.
    builds.sort(key=lambda b: -sizes[b[0]])
    await asyncio.gather(*(build(make) for _, make in builds))


def _table_sizes(connection: Connection, tables: set[Table]) -> dict[Table, int]:
    """Each table's size in bytes on disk (PostgreSQL)."""
    preparer = connection.dialect.identifier_preparer
    return {
        t: int(
            connection.execute(
                text("SELECT pg_relation_size(to_regclass(:name))"),
                {"name": preparer.format_table(t)},
            ).scalar_one()
        )
        for t in tables
    }


def _indexes(projections: Sequence[Projection]) -> list[Index]:
    return [i for p in projections for t in p.metadata.sorted_tables for i in t.indexes]


def _keyed_after_load(projections: Sequence[Projection]) -> list[Table]:
    return [t for p in projections for t in p.keyed_after_load]


async def apply_page(
    db: ReadModelDB, projections: Sequence[Projection], page: list[RecordedEvent]
) -> None:
    """One page into every projection, checkpoints included, in one transaction."""
    async with db.transaction() as conn:
        for projection in projections:
            await projection.apply_all(conn, page)
            await save_checkpoint(conn, checkpoint_name(projection.name), page[-1].position)


async def rebuild_all(
    store: EventStore,
    db: ReadModelDB,
    projections: Sequence[Projection],
    progress: Progress | None = None,
    page_size: int = REBUILD_PAGE,
) -> int:
    """Drop ``projections`` and replay the whole log into them; returns the events applied."""
    await drop(db, projections)
    applied = 0
    async with contextlib.aclosing(_read_ahead(lambda a: store.read_all(a, page_size))) as pages:
        async for page in pages:
            await apply_page(db, projections, page)
            applied += len(page)
            if progress is not None:
                progress(len(page))
    await build_indexes(db, projections)
    return applied


async def _read_ahead(
    read: Callable[[int], Awaitable[list[RecordedEvent]]],
) -> AsyncGenerator[list[RecordedEvent], None]:
    """The pages ``read(after)`` gives until an empty one, each next page read while
    the caller applies the current one: the store's database works meanwhile."""
    reading = asyncio.ensure_future(read(0))
    try:
        while page := await reading:
            reading = asyncio.ensure_future(read(page[-1].position))
            yield page
    finally:
        if not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading


# --------------------------------------------------------------- several processes


def service_read_models(service: str) -> list[Projection]:
    """The projections of ``service``'s own log (its ``ServiceSpec``), counts included."""
    read_models: list[Projection] = catalogue.spec(service).read_models()
    return read_models


@dataclass(frozen=True)
class RebuildJob:
    """Some of one service's read models, rebuilt by one process in one pass.

    With ``until`` set, the read models were made ready by ``rebuild_logs`` (dropped,
    marked unfinished) and the job applies the log up to that position, only the
    streams of its ``partition`` and only the event ``types`` when given, leaving
    the indexes and the final checkpoints to ``rebuild_logs``."""

    service: str
    store_url: str
    read_model_url: str
    projections: tuple[str, ...]
    work: float = 1.0  # events × (reading + the group's ``rebuild_cost``): biggest first
    partition: tuple[int, int] | None = None  # streams of buckets [first, end) of STREAM_BUCKETS
    types: frozenset[str] | None = None
    until: int | None = None

    @property
    def share(self) -> float:
        """The part of the log's streams it reads (1.0: all)."""
        if self.partition is None:
            return 1.0
        return (self.partition[1] - self.partition[0]) / STREAM_BUCKETS

    @property
    def label(self) -> str:
        part = f" ({self.share:.0%} of the streams)" if self.partition else ""
        return f"{self.service}: {', '.join(self.projections)}{part}"


@dataclass(frozen=True)
class JobResult:
    job: RebuildJob
    events: int
    seconds: float


def plan(
    service: str,
    store_url: str,
    read_model_url: str,
    projections: Sequence[Projection],
    groups: int,
    events: int = 1,
) -> list[RebuildJob]:
    """Split ``projections`` into at most ``groups`` jobs of similar summed cost.

    Greedy: the costliest read model first, each into the cheapest group so far.
    A SQLite read-model database takes one writer at a time, so it gets one job.
    """
    if groups < 1:
        raise ValueError("groups must be at least 1")
    if not _postgres(read_model_url):
        groups = 1
    count = min(groups, len(projections))
    loads, members = [0.0] * count, [list[str]() for _ in range(count)]
    for projection in sorted(projections, key=lambda p: -p.rebuild_cost):
        cheapest = loads.index(min(loads))
        loads[cheapest] += projection.rebuild_cost
        members[cheapest].append(projection.name)
    return [
        RebuildJob(service, store_url, read_model_url, tuple(names), events * (READ_COST + load))
        for load, names in zip(loads, members, strict=True)
        if names
    ]


@dataclass(frozen=True)
class LogToRebuild:
    """One service's log and the read models to rebuild from it."""

    service: str
    store_url: str
    read_model_url: str
    projections: Sequence[Projection]
    events: int

    @property
    def work(self) -> float:
        return self.events * (READ_COST + sum(p.rebuild_cost for p in self.projections))


def plan_all(logs: Sequence[LogToRebuild], workers: int) -> list[RebuildJob]:
    """Jobs for several services' rebuilds sharing ``workers`` processes.

    A service's share of the whole work says how many processes it gets. A log
    that gets several, and whose work is mostly in ``partitionable`` read models,
    has those split by stream: each part is read once and applied to all of them,
    and the parts are sized to even out the processes' loads once the other jobs
    are placed (run biggest first, each on the first free process, they then end
    together). Its other read models get one job, reading only the event types
    they handle when they all say. The rest is split by read model (``plan``),
    each group reading the whole log.
    """
    total = sum(log.work for log in logs) or 1.0
    jobs: list[RebuildJob] = []
    split: list[LogToRebuild] = []
    for log in logs:
        groups = max(1, min(workers, math.ceil(log.work * workers / total)))
        parted = [p for p in log.projections if p.partitionable]
        rest = [p for p in log.projections if not p.partitionable]
        worth = sum(p.rebuild_cost for p in parted) >= sum(p.rebuild_cost for p in rest)
        if groups == 1 or not worth or not _postgres(log.read_model_url):
            jobs += plan(
                log.service, log.store_url, log.read_model_url, log.projections, groups, log.events
            )
            continue
        split.append(log)
        if rest:
            handled = [p.handles for p in rest]
            types = None if None in handled else frozenset().union(*filter(None, handled))
            rest_cost = sum(p.rebuild_cost for p in rest) + (0 if types else READ_COST)
            rest_names = tuple(p.name for p in rest)
            where = (log.service, log.store_url, log.read_model_url)
            jobs.append(RebuildJob(*where, rest_names, log.events * rest_cost, types=types))
    loads = [0.0] * workers
    for job in sorted(jobs, key=lambda j: -j.work):
        loads[loads.index(min(loads))] += job.work
    for log in split:
        parted = [p for p in log.projections if p.partitionable]
        work = log.events * (READ_COST + sum(p.rebuild_cost for p in parted))
        shares = _fill(loads, work)
        names, first, done = tuple(p.name for p in parted), 0, 0.0
        for worker, share in enumerate(shares):
            if share <= 0:
                continue
            done += share
            end = STREAM_BUCKETS if done >= work * 0.999 else round(STREAM_BUCKETS * done / work)
            if end > first:
                where = (log.service, log.store_url, log.read_model_url)
                jobs.append(RebuildJob(*where, names, share, partition=(first, end)))
                loads[worker] += share
            first = end
    return jobs


def _fill(loads: list[float], work: float) -> list[float]:
    """How much of ``work`` each process takes to bring the least loaded ones to one
    level (water filling); a share under 5 % of ``work`` is given to the others."""
    order = sorted(range(len(loads)), key=lambda i: loads[i])
    level = 0.0
    for count in range(1, len(order) + 1):
        level = (work + sum(loads[i] for i in order[:count])) / count
        if count == len(order) or level <= loads[order[count]]:
            break
    shares = [max(0.0, level - load) for load in loads]
    kept = [s if s >= 0.05 * work else 0.0 for s in shares]
    scale = work / (sum(kept) or 1.0)
    return [s * scale for s in kept]


def _postgres(url: str) -> bool:
    return url.startswith(("postgresql", "postgres:"))


async def rebuild_job(job: RebuildJob, progress: Progress | None = None) -> JobResult:
    """Run one job here: open the service's store and read models, and rebuild."""
    chosen = [p for p in service_read_models(job.service) if p.name in job.projections]
    store = await open_event_store(job.store_url, namespace=job.service, pool_size=2)
    db = await ReadModelDB.open(job.read_model_url, pool_size=2)
    try:
        start = time.perf_counter()
        if job.until is None:
            applied = await rebuild_all(store, db, chosen, progress)
        else:
            applied = await _apply_part(store, db, chosen, job, progress)
        return JobResult(job, applied, time.perf_counter() - start)
    finally:
        await db.close()
        await store.close()


async def _apply_part(
    store: EventStore,
    db: ReadModelDB,
    projections: Sequence[Projection],
    job: RebuildJob,
    progress: Progress | None,
) -> int:
    """A prepared job's part of the log into ``projections``. One transaction per
    read model and page: rows that other parts add to too (sums) stay locked only
    for the moment of that read model's writes."""
    assert job.until is not None
    until, partition, types = job.until, job.partition, job.types
    names = [_part_checkpoint(p.name, partition) for p in projections]

    def read(after: int) -> Awaitable[list[RecordedEvent]]:
        return store.read_part(after, until, REBUILD_PAGE, buckets=partition, types=types)

    applied = 0
    async with contextlib.aclosing(_read_ahead(read)) as pages:
        async for page in pages:
            for projection, name in zip(projections, names, strict=True):
                async with db.transaction() as conn:
                    await projection.apply_all(conn, page)
                    await save_checkpoint(conn, name, page[-1].position)
            applied += len(page)
            if progress is not None:
                progress(len(page))
    return applied


def _part_checkpoint(name: str, partition: tuple[int, int] | None) -> str:
    return (
        checkpoint_name(name) if partition is None else partition_checkpoint_name(name, *partition)
    )


async def rebuild_logs(
    logs: Sequence[LogToRebuild],
    workers: int,
    progress: Callable[[RebuildJob, int], None] | None = None,
    planned: Callable[[list[RebuildJob]], None] | None = None,
) -> list[JobResult]:
    """Rebuild every read model of ``logs`` with ``workers`` processes (``plan_all``).

    For a log split by stream: first its read models are dropped and marked
    unfinished, and the head position is fixed as the end of every part; once all
    its jobs succeeded, the indexes are built and every checkpoint is set to that
    position in one transaction. A failure leaves the marks, and the service's
    start rebuilds such a read model from scratch (``ProjectionRunner.start``).
    ``planned`` is told the jobs before they run (to show progress bars)."""
    jobs = plan_all(logs, workers)
    split = {
        log.service: log
        for log in logs
        if any(j.partition for j in jobs if j.service == log.service)
    }
    # The processes start (and load the services' code) while the read models are dropped.
    async with RebuildProcesses(workers, [log.service for log in logs]) as processes:
        heads = {service: await prepare_split(log) for service, log in split.items()}
        jobs = [replace(j, until=heads[j.service]) if j.service in heads else j for j in jobs]
        if planned is not None:
            planned(jobs)
        results = await processes.run(jobs, progress)
        # The processes exit (seconds, on a busy machine) while the server builds indexes.
        finishing = [finish_split(log, heads[service]) for service, log in split.items()]
        await asyncio.gather(processes.close(), *finishing)
    return results


async def prepare_split(log: LogToRebuild) -> int:
    """Drop ``log``'s read models, mark them unfinished; the head position to reach."""
    store = await open_event_store(log.store_url, namespace=log.service, pool_size=1)
    try:
        head = await store.head_position()
    finally:
        await store.close()
    db = await ReadModelDB.open(log.read_model_url, pool_size=1)
    try:
        await drop(db, log.projections)
        async with db.transaction() as conn:
            for projection in log.projections:
                await save_checkpoint(
                    conn, unfinished_rebuild_name(projection.name), 0, marker=f"until {head}"
                )
    finally:
        await db.close()
    return head


async def finish_split(log: LogToRebuild, head: int) -> None:
    """Build the indexes, set every checkpoint to ``head``, remove parts and marks."""
    db = await ReadModelDB.open(log.read_model_url, pool_size=2)
    try:
        await build_indexes(db, log.projections)
        async with db.transaction() as conn:
            for projection in log.projections:
                await conn.execute(checkpoints.delete().where(split_rebuild_rows(projection.name)))
                await save_checkpoint(conn, checkpoint_name(projection.name), head)
    finally:
        await db.close()


def collect_rarely() -> None:
    """Tune a process that replays: a page makes and drops many short-lived objects
    that form no cycles, and collecting after every 700 allocations (Python's
    default) cost about 15 % of a rebuild. What exists already is frozen out of
    the collector's sight."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


_updates: Any = None  # a worker process's queue to the parent: (job, events applied)


def _start_worker(updates: Any, services: Sequence[str]) -> None:
    """A worker process's start: its queue to the parent, its collector tuned, and the
    services' code loaded (before any job comes, while the parent prepares)."""
    global _updates
    _updates = updates
    collect_rarely()
    for service in services:
        service_read_models(service)


def _ready() -> None:
    """A task that does nothing: submitting it makes the pool start its processes."""


def _job_process(job: RebuildJob) -> JobResult:
    """A worker process's entry: the job, telling the parent each page applied."""
    return asyncio.run(rebuild_job(job, lambda n: _updates.put((job, n))))


class RebuildProcesses:
    """``workers`` fresh processes that run rebuild jobs, started on entering: each
    loads the code of ``services`` meanwhile (the caller's preparations overlap it)."""

    def __init__(self, workers: int, services: Sequence[str]) -> None:
        self._workers = workers
        self._services = tuple(dict.fromkeys(services))
        self._closed = False

    async def __aenter__(self) -> RebuildProcesses:
        context = multiprocessing.get_context("spawn")  # no forked copy of a running loop
        # A simple queue: a put has reached the pipe when it returns, so once a job has
        # ended the parent has every count of its pages. (A managed queue's start waited
        # for a process of its own to import the caller's module: seconds, loop blocked.)
        self._updates: SimpleQueue[tuple[RebuildJob, int]] = context.SimpleQueue()
        self._pool = ProcessPoolExecutor(
            self._workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(self._updates, self._services),
        )
        for _ in range(self._workers):
            self._pool.submit(_ready)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Let the processes exit and wait for them (again: nothing more to do)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)
        self._updates.close()

    async def run(
        self,
        jobs: Sequence[RebuildJob],
        progress: Callable[[RebuildJob, int], None] | None = None,
    ) -> list[JobResult]:
        """Run ``jobs``, biggest first, each on the first free process; results in job
        order. A failing job fails the call once the others have finished (nothing
        half-done is hidden: that read model stays at its last committed page)."""
        loop = asyncio.get_running_loop()
        order = sorted(range(len(jobs)), key=lambda i: -jobs[i].work)
        futures = {i: loop.run_in_executor(self._pool, _job_process, jobs[i]) for i in order}
        pending = set(futures.values())

        def drain() -> None:
            while not self._updates.empty():
                job, n = self._updates.get()
                if progress is not None:
                    progress(job, n)

        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.2)
            drain()
        drain()
        return [futures[i].result() for i in range(len(jobs))]


async def rebuild_in_processes(
    jobs: Sequence[RebuildJob],
    workers: int,
    progress: Callable[[RebuildJob, int], None] | None = None,
) -> list[JobResult]:
    """Run ``jobs`` in ``workers`` fresh processes (``RebuildProcesses``)."""
    if not jobs:
        return []
    async with RebuildProcesses(workers, [job.service for job in jobs]) as processes:
        return await processes.run(jobs, progress)
