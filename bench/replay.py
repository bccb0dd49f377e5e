"""Replaying history: every read model rebuilt from a million events in PostgreSQL.

``python -m bench.replay [--events N] [--no-write]`` (also part of ``make bench``).

* ``replay.events_per_s``: events in the four contexts' stores divided by the
  wall time of rebuilding every read model of identity, departments, clients
  and tickets (``shared.projections.replay.rebuild_all``, what ``python -m shared.cli
  rebuild all`` runs: one pass per service, pages of 20,000, the next page read
  while one is applied). Goal: ≥ 50,000/s. ``replay.<context>.events_per_s``
  are the per-context rates. ``replay.kernel_path_events_per_s``: the same log
  replayed into the kernel's ``EventTypeCounts`` alone (reading, decoding, a
  page written in a few statements): the ceiling the services' projections
  work under. ``replay.vs_kernel_path`` (goal ≥ 0.7) is the first over the
  second, both from the same run and the same log (the rebuild first, then
  the kernel path, one process).

The events are what the services write (``--events``, default 1,000,000):
built as the domain's payload models, encoded by the contexts' registries, and
personal fields sealed with per-client keys (AES-GCM, ``shared.privacy.shredding``),
whose keys are in each context's read-model database, so the rebuild opens
them as a real one does. A seeded mix (per client): registration, a change
of phone, every fourth an abuse notice with penalty points; two tickets, each
opened, answered by staff, replied to by the client, assigned, closed, and
every second rated. Plus 200 staff with grants and 20 departments with rights.
About 83 % ticket facts, 16 % client facts.

Seeding is not timed: rows are COPYed straight into each store's ``events``
table (positions and stream versions as an append gives them), then
``ANALYZE``. Each context has a store database and a read-model database
(``bench_replay_<context>``, ``bench_replay_<context>_read``), dropped after
the run; ``--keep`` keeps them and ``--reuse`` rebuilds a kept set again
without seeding (for profiling).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeElapsedColumn

from bench import goals
from services.clients.domain import events as client_events
from services.departments.domain import events as department_events
from services.identity.domain import events as identity_events
from services.tickets.domain import events as ticket_events
from shared.access.control import DepartmentRightsChanged, IpPolicy
from shared.domain import rights as catalogue
from shared.domain.events import Actor, DomainEvent, EventRegistry, actor_to_json
from shared.eventstore.postgres import PostgresEventStore
from shared.privacy.shredding import personal_fields, seal_value, subject_keys, subject_of
from shared.projections.builtin import EventTypeCounts
from shared.projections.replay import (
    REBUILD_PAGE,
    LogToRebuild,
    RebuildJob,
    rebuild_all,
    rebuild_logs,
    service_read_models,
)
from shared.readmodel.database import ReadModelDB

DSN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SEED = 20_261_215
EVENTS = 1_000_000
CONTEXTS = ("identity", "departments", "clients", "tickets")
STAFF = 200
DEPARTMENTS = 20
COPY_CHUNK = 50_000
WORKERS = os.cpu_count() or 1
BASE = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)

REGISTRIES: dict[str, EventRegistry] = {
    "identity": identity_events.registry,
    "departments": department_events.registry,
    "clients": client_events.registry,
    "tickets": ticket_events.registry,
}
SUBJECTS = ("Site answers 502", "Mailbox full", "DNS not resolving", "SSL renewal failed",
            "Backup restore", "Upgrade VPS plan", "Refund request", "Port 25 blocked")  # fmt: skip
COPY_COLUMNS = (
    "position", "event_id", "stream", "stream_version", "type", "schema_version",
    "occurred_at", "correlation_id", "causation_id", "actor", "data",
)  # fmt: skip

console = Console()


# --------------------------------------------------------------------------- the history


@dataclass
class Log:
    """One context's events as rows ready to COPY, with positions and stream versions."""

    context: str
    keys: dict[str, bytes] = field(default_factory=dict)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    count: int = 0
    _positions: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _versions: dict[str, int] = field(default_factory=dict)

    def add(
        self, rng: random.Random, stream: str, payload: DomainEvent, at: datetime, actor: Actor
    ) -> None:
        """Encode like the application layer (registry, then sealing), as a store row."""
        registry = REGISTRIES[self.context]
        event = registry.encode(payload, actor=actor, event_id=_uuid(rng))
        data = event.data
        model = type(payload)
        sealed = personal_fields(model)
        if sealed:
            subject = subject_of(data, model)
            key = self.keys.setdefault(subject, AESGCM.generate_key(bit_length=256))
            data = {
                name: seal_value(key, subject, value)
                if name in sealed and isinstance(value, str)
                else value
                for name, value in data.items()
            }
        version = self._versions.get(stream, 0) + 1
        self._versions[stream] = version
        self.rows.append(
            (next(self._positions), event.event_id, stream, version, event.type,
             event.schema_version, at, _uuid(rng), None, actor_to_json(actor),
             orjson.dumps(data).decode())
        )  # fmt: skip
        self.count += 1


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _id(rng: random.Random) -> str:
    return str(_uuid(rng))


def staff_and_departments(rng: random.Random, logs: dict[str, Log]) -> tuple[list[str], list[str]]:
    """20 departments with rights, 200 staff in them with a grant each."""
    admin = Actor(id="admin", kind="staff")
    departments = [_id(rng) for _ in range(DEPARTMENTS)]
    sections = sorted(catalogue.SECTIONS)
    for n, department_id in enumerate(departments):
        stream, at = f"department-{department_id}", BASE + timedelta(minutes=n)
        log = logs["departments"]
        log.add(rng, stream, department_events.DepartmentCreated(
            department_id=department_id, name=department_events.LocalizedText(en=f"Desk {n}"),
            schedule_id=None, task_language="en",
            support=department_events.Support(enabled=True, sort=n),
        ), at, admin)  # fmt: skip
        enabled: list[str] = []
        for section in rng.sample(sections, 3):
            enabled.append(section)
            log.add(rng, stream, department_events.DepartmentRightEnabled(
                department_id=department_id, right=section), at, admin)  # fmt: skip
            log.add(rng, stream, DepartmentRightsChanged(
                department_id=department_id,
                rights=sorted(catalogue.expand(frozenset(enabled)))), at, admin)  # fmt: skip
    staff = [_id(rng) for _ in range(STAFF)]
    rights = sorted(catalogue.ALL_RIGHTS)
    for n, staff_id in enumerate(staff):
        stream, at = f"staff-{staff_id}", BASE + timedelta(hours=1, minutes=n)
        log = logs["identity"]
        log.add(rng, stream, identity_events.StaffAdded(
            staff_id=staff_id, login=f"staff{n}",
            full_name=identity_events.LocalizedName(en=f"S {n}"),
            email=f"staff{n}@provider.example", phone=None,
            departments=rng.sample(departments, 2), full_access=n == 0, ip_policy=IpPolicy(),
            bind_session_to_ip=False, chat_enabled=False, group="staff",
        ), at, admin)  # fmt: skip
        log.add(rng, stream, identity_events.RightGranted(
            staff_id=staff_id, right=rng.choice(rights)), at, admin)  # fmt: skip
    return staff, departments


def client_life(
    rng: random.Random,
    logs: dict[str, Log],
    n: int,
    staff: Sequence[str],
    departments: Sequence[str],
) -> None:
    """One client's history: their card and two tickets (see the module docstring)."""
    client_id = _id(rng)
    client = Actor(id=client_id, kind="client")
    agent = Actor(id=rng.choice(staff), kind="staff")
    at = BASE + timedelta(days=1, seconds=n * 30)
    stream = f"client-{client_id}"
    clients = logs["clients"]
    clients.add(rng, stream, client_events.ClientRegistered(
        client_id=client_id, login=f"client{n}", email=f"client{n}@example.com", country="DE",
        customer_status="individual", contact_person=f"Client Person {n}",
        registered_at=at, registration_ip="198.51.100.7", products=["vps"],
    ), at, agent)  # fmt: skip
    clients.add(rng, stream, client_events.ClientChanged(
        client_id=client_id, changed=["phone"], phone=f"+49 30 {n:07d}",
    ), at + timedelta(hours=1), client)  # fmt: skip
    if n % 4 == 0:
        message_id = _id(rng)
        clients.add(rng, stream, client_events.ClientMessaged(
            client_id=client_id, message_id=message_id, subject="Abuse report",
            text="Spam from your server", language="en",
            violation=client_events.Violation(deadline=at + timedelta(days=2),
                                              on_no_reaction="suspend_services", penalty_points=2),
        ), at + timedelta(hours=2), agent)  # fmt: skip
        clients.add(rng, stream, client_events.PenaltyPointsAdded(
            client_id=client_id, message_id=message_id, points=2,
        ), at + timedelta(hours=2), agent)  # fmt: skip
    tickets = logs["tickets"]
    for t in range(2):
        ticket_id = _id(rng)
        stream = f"ticket-{ticket_id}"
        opened = at + timedelta(days=t + 1)
        department_id = rng.choice(departments)
        first, reply, answer = _id(rng), _id(rng), _id(rng)
        tickets.add(rng, stream, ticket_events.TicketOpened(
            ticket_id=ticket_id, client_id=client_id, department_id=department_id,
            subject=rng.choice(SUBJECTS), body="Since this morning the site answers 502.",
            message_id=first, due_at=opened + timedelta(hours=4),
        ), opened, client)  # fmt: skip
        tickets.add(rng, stream, ticket_events.TicketAssigned(
            ticket_id=ticket_id, assignee_id=agent.id,
        ), opened + timedelta(minutes=5), agent)  # fmt: skip
        tickets.add(rng, stream, ticket_events.TicketMessagePosted(
            ticket_id=ticket_id, client_id=client_id, message_id=reply, author_kind="staff",
            author_id=agent.id, body="We restarted nginx, please check.",
            close_due_at=opened + timedelta(days=7),
        ), opened + timedelta(minutes=30), agent)  # fmt: skip
        tickets.add(rng, stream, ticket_events.TicketMessagePosted(
            ticket_id=ticket_id, client_id=client_id, message_id=answer, author_kind="client",
            author_id=client_id, body="Works again, thanks.", due_at=opened + timedelta(hours=5),
        ), opened + timedelta(hours=1), client)  # fmt: skip
        tickets.add(rng, stream, ticket_events.TicketClosed(
            ticket_id=ticket_id, reason="client"), opened + timedelta(hours=2), client)  # fmt: skip
        if (n + t) % 2 == 0:
            tickets.add(rng, stream, ticket_events.TicketRated(
                ticket_id=ticket_id, client_id=client_id, score=rng.randint(3, 5),
                comment="Quick and kind",
            ), opened + timedelta(hours=2), client)  # fmt: skip


# --------------------------------------------------------------------------- databases


def _db_url(name: str) -> str:
    return DSN.rsplit("/", 1)[0] + "/" + name


def _names(context: str) -> tuple[str, str]:
    return f"bench_replay_{context}", f"bench_replay_{context}_read"


async def _admin(*statements: str) -> None:
    admin = await asyncpg.connect(DSN)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


async def _count(context: str) -> int:
    try:
        conn = await asyncpg.connect(_db_url(_names(context)[0]))
    except asyncpg.InvalidCatalogNameError:
        return -1
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    except asyncpg.UndefinedTableError:
        return -1
    finally:
        await conn.close()


async def seed(events: int, progress: Progress) -> dict[str, int]:
    """Fresh databases holding the seeded history; returns the events per context."""
    for context in CONTEXTS:
        for name in _names(context):
            await _admin(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
            )
    rng = random.Random(SEED)
    logs = {c: Log(c) for c in CONTEXTS}
    staff, departments = staff_and_departments(rng, logs)
    task = progress.add_task("seeding (COPY)", total=events)
    conns: dict[str, asyncpg.Connection] = {}

    async def copy_pending() -> None:
        for context, log in logs.items():
            if log.rows:
                await conns[context].copy_records_to_table(
                    "events", records=log.rows, columns=COPY_COLUMNS
                )
                log.rows = []
        progress.update(task, completed=sum(log.count for log in logs.values()))

    try:
        for context in CONTEXTS:
            store = await PostgresEventStore.open(_db_url(_names(context)[0]), pool_size=1)
            await store.close()  # only its schema
            conns[context] = await asyncpg.connect(_db_url(_names(context)[0]))
        # Whole client histories until the stores hold at least ``events``.
        n = 0
        while sum(log.count for log in logs.values()) < events:
            client_life(rng, logs, n, staff, departments)
            n += 1
            if n % 2000 == 0:
                await copy_pending()
        await copy_pending()
        for conn in conns.values():
            await conn.execute(
                "SELECT setval('events_position_seq', "
                "(SELECT coalesce(max(position), 1) FROM events))"
            )
            await conn.execute("ANALYZE events")
    finally:
        for conn in conns.values():
            await conn.close()
    for context, log in logs.items():
        db = await ReadModelDB.open(_db_url(_names(context)[1]), pool_size=1)
        try:
            await db.create_tables(subject_keys.metadata)
            now = datetime.now(UTC)
            rows = [{"subject_id": s, "key": k, "created_at": now} for s, k in log.keys.items()]
            async with db.transaction() as conn:
                for start in range(0, len(rows), 10_000):
                    await conn.execute(subject_keys.insert(), rows[start : start + 10_000])
        finally:
            await db.close()
    return {c: log.count for c, log in logs.items()}


# --------------------------------------------------------------------------- the rebuild


async def rebuild(progress: Progress, workers: int) -> tuple[float, dict[str, tuple[int, float]]]:
    """Rebuild every context's read models as ``rebuild all --workers`` does
    (``shared.projections.replay.rebuild_logs``: the tickets log split by stream, the rest by
    read model), all contexts side by side. The wall time, and (events, seconds of
    its slowest job) per context."""
    logs = []
    for context in CONTEXTS:
        store_db, read_db = (_db_url(n) for n in _names(context))
        events = await _count(context)
        logs.append(LogToRebuild(context, store_db, read_db, service_read_models(context), events))
    counts = {log.service: log.events for log in logs}
    tasks: dict[RebuildJob, TaskID] = {}

    def planned(jobs: list[RebuildJob]) -> None:
        for job in jobs:
            total = round(counts[job.service] * job.share)
            tasks[job] = progress.add_task(f"rebuild {job.label}", total=total)

    start = time.perf_counter()
    results = await rebuild_logs(
        logs, workers, lambda job, n: progress.advance(tasks[job], n), planned
    )
    wall = time.perf_counter() - start
    timings: dict[str, tuple[int, float]] = {}
    for result in results:
        _, seconds = timings.get(result.job.service, (0, 0.0))
        events = counts[result.job.service]
        timings[result.job.service] = (events, max(seconds, result.seconds))
    return wall, timings


async def kernel_path(progress: Progress) -> dict[str, tuple[int, float]]:
    """The replay path itself, one process: reading, decoding and the kernel's
    ``EventTypeCounts`` (a page written in a few statements); (events, seconds)."""
    timings: dict[str, tuple[int, float]] = {}
    for context in CONTEXTS:
        store_db, read_db = (_db_url(n) for n in _names(context))
        store = await PostgresEventStore.open(store_db, pool_size=2)
        db = await ReadModelDB.open(read_db, pool_size=2)
        try:
            task = progress.add_task(f"kernel path {context}", total=await store.count())

            def advance(n: int, task: TaskID = task) -> None:
                progress.advance(task, n)

            start = time.perf_counter()
            applied = await rebuild_all(store, db, [EventTypeCounts()], advance)
            timings[context] = (applied, time.perf_counter() - start)
        finally:
            await db.close()
            await store.close()
    return timings


async def drop_databases() -> None:
    for context in CONTEXTS:
        for name in _names(context):
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def measure(
    events: int, reuse: bool, keep: bool, workers: int
) -> tuple[dict[str, float], dict[str, Any]]:
    load_before = os.getloadavg()
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, refresh_per_second=2,
    ) as progress:  # fmt: skip
        counts = {c: await _count(c) for c in CONTEXTS}
        if not (reuse and sum(counts.values()) >= events and min(counts.values()) > 0):
            counts = await seed(events, progress)
        wall, timings = await rebuild(progress, workers)
        kernel = await kernel_path(progress)
    if not keep:
        await drop_databases()
    total = sum(n for n, _ in timings.values())
    results = {"replay.events_per_s": total / wall, "replay.events": float(total)}
    for context, (n, s) in timings.items():
        results[f"replay.{context}.events_per_s"] = n / s
    results["replay.kernel_path_events_per_s"] = total / sum(s for _, s in kernel.values())
    results["replay.vs_kernel_path"] = (
        results["replay.events_per_s"] / results["replay.kernel_path_events_per_s"]
    )
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": counts,
        "seconds": round(wall, 2),
        "workers": workers,
        "slowest_group_seconds": {c: round(s, 2) for c, (_, s) in timings.items()},
        "kernel_path_seconds": {c: round(s, 2) for c, (_, s) in kernel.items()},
        "projections": {c: [p.name for p in service_read_models(c)] for c in CONTEXTS},
        "page_size": REBUILD_PAGE,
        "seed": SEED,
        "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
        "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
    }
    return results, meta


def run(
    events: int = EVENTS, reuse: bool = False, keep: bool = False, workers: int = WORKERS
) -> tuple[dict[str, float], dict[str, Any]]:
    """Figures for ``bench/results.json`` and context for ``results.meta.json``."""
    return asyncio.run(measure(events, reuse, keep, workers))


def print_table(results: dict[str, float]) -> None:
    goals.print_table(results, "Replay: every read model rebuilt from the log (PostgreSQL)")


def main(argv: Sequence[str] | None = None) -> None:
    from bench.run import RESULTS_PATH, merge_json

    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--events", type=int, default=EVENTS, help="seeded events (figure: 1M)")
    parser.add_argument("--keep", action="store_true", help="keep the databases after the run")
    parser.add_argument("--reuse", action="store_true", help="use the stores --keep kept")
    parser.add_argument("--workers", type=int, default=WORKERS, help="rebuild processes")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results JSON")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.events < 1_000:
        parser.error("--events must be at least 1000")
    results, meta = run(args.events, args.reuse, args.keep, args.workers)
    print_table(results)
    # Only a run of the documented size replaces the recorded figures.
    if not args.no_write and args.events >= EVENTS:
        merge_json(
            args.output,
            goals.with_goals(goals.rounded(results)),
        )
        merge_json(args.output.with_name(args.output.stem + ".meta.json"), {"replay": meta})
        console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
