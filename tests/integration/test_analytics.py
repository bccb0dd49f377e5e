"""Analysing history against real PostgreSQL stores: export round-trips and time travel.

A scripted history is written through the domain (aggregates decide, the real
registries encode, the real sealer seals personal fields with per-client keys)
into one PostgreSQL database per context, with explicit ``occurred_at`` so
every moment is known. Then the exports and the "as of T" answers are checked
against what the script did.

The script (hours after T0):

    1  departments Support (tickets.view, tickets.reply) and Sales (no rights)
    2  staff: anna (Support), boris (Sales), carl (full access), dora (Sales)
    3  clients c1, c2 registered; company K with both, nobody manager
    4  ticket X opened by c1 in Support
    5  dora granted tickets.view and tickets.all_departments
    6  X transferred to Sales; c2 made K's client manager; c2's phone changed
    7  Support turns tickets.view off
    8  c1 erased: ClientErased, key destroyed

The same history checks the one-pass rebuild (``shared.projections.replay``) against read
models that followed the log live, for every context.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import inspect, select
from typer.testing import CliRunner

from analytics import history
from analytics.export import Selection, export_events, open_sink
from analytics.sources import Source
from services.clients.domain.client import Client, ClientCard, ClientPatch, References
from services.clients.domain.company import Company
from services.clients.domain.events import registry as clients_registry
from services.departments.domain.department import Department
from services.departments.domain.events import LocalizedText
from services.departments.domain.events import registry as departments_registry
from services.identity.domain.events import LocalizedName
from services.identity.domain.events import registry as identity_registry
from services.identity.domain.staff import Staff
from services.tickets.domain.events import registry as tickets_registry
from services.tickets.domain.ticket import Ticket
from services.tickets.projections.queue import TicketQueue
from services.tickets.projections.queue import tickets as queue_tickets
from shared import catalogue
from shared.application.commands import load
from shared.cli import cli
from shared.domain.events import DomainEvent, EventRegistry, RecordedEvent
from shared.eventstore import EventStore, open_event_store
from shared.eventstore.port import STREAM_BUCKETS
from shared.names import checkpoint_name
from shared.privacy.shredding import KeyRing, Sealer
from shared.projections.builtin import EventTypeCounts
from shared.projections.replay import (
    LogToRebuild,
    RebuildJob,
    drop,
    plan,
    prepare_split,
    rebuild_all,
    rebuild_in_processes,
    rebuild_job,
    rebuild_logs,
    service_read_models,
)
from shared.projections.runner import Projection, ProjectionRunner
from shared.readmodel.database import ReadModelDB, checkpoints
from shared.readmodel.leases import Leases
from tests.conftest import fresh_database

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CONTEXTS = ("identity", "departments", "clients", "tickets")


def hour(n: float) -> datetime:
    return T0 + timedelta(hours=n)


@dataclass
class World:
    """The four contexts' databases (store and keys in one database each) and the ids."""

    urls: dict[str, str]
    stores: dict[str, EventStore]
    keys: dict[str, KeyRing]
    ids: dict[str, str]

    def source(self, context: str) -> Source:
        return Source(context, self.urls[context], self.urls[context])

    async def all_events(self, context: str) -> list[RecordedEvent]:
        return await self.stores[context].read_all(0, 100_000)


async def record(
    store: EventStore,
    registry: EventRegistry,
    stream: str,
    events: Sequence[DomainEvent],
    at: datetime,
    sealer: Sealer | None = None,
) -> None:
    """Append what an aggregate decided, as having happened at ``at``."""
    encoded = [dataclasses.replace(registry.encode(e), occurred_at=at) for e in events]
    if sealer is not None:
        encoded = [await sealer.seal(e) for e in encoded]
    await store.append(stream, encoded)


async def script(world: World) -> None:
    s, ids = world.stores, world.ids
    clients_sealer = Sealer(clients_registry, world.keys["clients"])
    tickets_sealer = Sealer(tickets_registry, world.keys["tickets"])
    support, sales = ids["support"], ids["sales"]

    async def department(department_id: str) -> Department:
        return await load(
            s["departments"], departments_registry, f"department-{department_id}", Department
        )

    # 1: departments
    for department_id, name in ((support, "Support"), (sales, "Sales")):
        created = Department.create(department_id, LocalizedText(en=name))
        await record(
            s["departments"], departments_registry, f"department-{department_id}", created, hour(1)
        )
    for right in ("tickets.view", "tickets.reply"):
        turned_on = (await department(support)).set_right(right, True)
        await record(
            s["departments"], departments_registry, f"department-{support}", turned_on, hour(1)
        )

    # 2: staff
    known = {support, sales}
    for login, departments, full in (
        ("anna", [support], False),
        ("boris", [sales], False),
        ("carl", [], True),
        ("dora", [sales], False),
    ):
        added = Staff.add(
            ids[login], login, LocalizedName(en=login.title()), None, None, departments, known,
            full_access=full,
        )  # fmt: skip
        await record(s["identity"], identity_registry, f"staff-{ids[login]}", added, hour(2))

    # 3: clients and their company
    for name in ("c1", "c2"):
        card = ClientCard(
            login=f"{name}login", email=f"{name}@example.com", country="DE",
            customer_status="individual", contact_person=f"Person {name}",
        )  # fmt: skip
        registered = Client.register(ids[name], card, References(), hour(3), "192.0.2.1")
        await record(
            s["clients"],
            clients_registry,
            f"client-{ids[name]}",
            registered,
            hour(3),
            clients_sealer,
        )
    created = Company.create(ids["company"], "K")
    company = Company().applied(created)
    await record(s["clients"], clients_registry, f"company-{ids['company']}", created, hour(3))
    for name in ("c1", "c2"):
        joined = company.add_member(ids[name])
        company.applied(joined)
        await record(s["clients"], clients_registry, f"company-{ids['company']}", joined, hour(3))

    # 4: the ticket
    opened = Ticket.open(
        ids["ticket"], client_id=ids["c1"], department_id=support, subject="Site down",
        body="502 since noon", company_id=ids["company"],
    )  # fmt: skip
    await record(
        s["tickets"], tickets_registry, f"ticket-{ids['ticket']}", opened, hour(4), tickets_sealer
    )

    # 5: dora's individual grants
    dora = await load(s["identity"], identity_registry, f"staff-{ids['dora']}", Staff)
    for right in ("tickets.view", "tickets.all_departments"):
        granted = dora.grant(right)
        dora.applied(granted)
        await record(s["identity"], identity_registry, f"staff-{ids['dora']}", granted, hour(5))

    # 6: transfer, manager, phone
    ticket = await load(
        s["tickets"], tickets_registry, f"ticket-{ids['ticket']}", Ticket, sealer=tickets_sealer
    )
    moved = ticket.transfer(department_id=sales, staff_id=None, notices_shown=0)
    await record(s["tickets"], tickets_registry, f"ticket-{ids['ticket']}", moved, hour(6))
    manager = company.assign_manager(ids["c2"])
    await record(s["clients"], clients_registry, f"company-{ids['company']}", manager, hour(6))
    c2 = await load(
        s["clients"], clients_registry, f"client-{ids['c2']}", Client, sealer=clients_sealer
    )
    phone = c2.change(ClientPatch(phone="+49 30 1234"), References())
    await record(
        s["clients"], clients_registry, f"client-{ids['c2']}", phone, hour(6), clients_sealer
    )

    # 7: Support loses tickets.view
    turned_off = (await department(support)).set_right("tickets.view", False)
    await record(
        s["departments"], departments_registry, f"department-{support}", turned_off, hour(7)
    )

    # 8: c1 erased (the clients service destroys its key; tickets does on ClientErased)
    c1 = await load(
        s["clients"], clients_registry, f"client-{ids['c1']}", Client, sealer=clients_sealer
    )
    await record(s["clients"], clients_registry, f"client-{ids['c1']}", c1.erase(), hour(8))
    await world.keys["clients"].destroy(ids["c1"])
    await world.keys["tickets"].destroy(ids["c1"])


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    names = ("support", "sales", "anna", "boris", "carl", "dora", "c1", "c2", "company", "ticket")
    ids = {name: f"{name}-{i:04d}" for i, name in enumerate(names)}
    async with (
        fresh_database() as identity,
        fresh_database() as departments,
        fresh_database() as clients,
        fresh_database() as tickets,
    ):
        urls = {
            "identity": identity,
            "departments": departments,
            "clients": clients,
            "tickets": tickets,
        }
        stores = {c: await open_event_store(urls[c], namespace=c, pool_size=2) for c in CONTEXTS}
        dbs = {c: await ReadModelDB.open(urls[c], pool_size=2) for c in ("clients", "tickets")}
        keys = {c: KeyRing(db) for c, db in dbs.items()}
        for ring in keys.values():
            await ring.create_tables()
        built = World(urls=urls, stores=stores, keys=keys, ids=ids)
        try:
            await script(built)
            yield built
        finally:
            for store in stores.values():
                await store.close()
            for db in dbs.values():
                await db.close()


# ---------------------------------------------------------------- export


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_export_jsonl_holds_every_event_opened_as_a_replay_would(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / "all.jsonl"
    sink = open_sink(path, "jsonl")
    report = await export_events([world.source(c) for c in CONTEXTS], sink)
    sink.close()
    rows = read_jsonl(path)
    stored = {c: await world.all_events(c) for c in CONTEXTS}
    assert report.written == {c: len(events) for c, events in stored.items()}
    assert len(rows) == sum(len(e) for e in stored.values())
    assert [(r["context"], r["event_id"]) for r in rows] == [
        (c, str(e.event_id)) for c in CONTEXTS for e in stored[c]
    ]
    first = rows[0]
    assert set(first) == {
        "context", "event_id", "type", "schema_version", "stored_schema_version", "stream",
        "stream_version", "position", "occurred_at", "correlation_id", "causation_id", "actor",
        "data",
    }  # fmt: skip
    by_type = {(r["context"], r["type"], r["stream"]): r for r in rows}
    ids = world.ids
    c2 = by_type[("clients", "ClientRegistered", f"client-{ids['c2']}")]
    assert c2["data"]["email"] == "c2@example.com"  # type: ignore[index]
    assert c2["data"]["country"] == "DE"  # type: ignore[index]
    assert c2["occurred_at"] == hour(3).isoformat()
    # c1 was erased: its personal fields are null everywhere, ids and country stay.
    c1 = by_type[("clients", "ClientRegistered", f"client-{ids['c1']}")]
    assert c1["data"]["email"] is None and c1["data"]["login"] is None  # type: ignore[index]
    assert c1["data"]["country"] == "DE"  # type: ignore[index]
    opened = by_type[("tickets", "TicketOpened", f"ticket-{ids['ticket']}")]
    assert opened["data"]["subject"] is None  # type: ignore[index]
    text = path.read_text()
    assert "sealed:v1:" not in text and "c1@example.com" not in text and "Site down" not in text
    assert "+49 30 1234" in text  # c2's phone: sealed in the store, open in the export


async def test_export_parquet_matches_jsonl(world: World, tmp_path: Path) -> None:
    sources = [world.source(c) for c in CONTEXTS]
    for fmt in ("jsonl", "parquet"):
        sink = open_sink(tmp_path / f"all.{fmt}", fmt, row_group_size=7)
        await export_events(sources, sink, page_size=5)
        sink.close()
    rows = read_jsonl(tmp_path / "all.jsonl")
    parquet = pq.ParquetFile(tmp_path / "all.parquet")
    assert parquet.metadata.num_row_groups == -(-len(rows) // 7)  # written in row groups
    table = parquet.read().to_pylist()
    assert len(table) == len(rows)
    for row, col in zip(rows, table, strict=True):
        assert col["event_id"] == row["event_id"] and col["type"] == row["type"]
        assert json.loads(col["data"]) == row["data"]
        assert col["occurred_at"] == datetime.fromisoformat(str(row["occurred_at"]))
        assert col["actor_id"] == row["actor"]["id"]  # type: ignore[index]
        assert col["position"] == row["position"]


async def test_export_filters_by_type_and_time_range(world: World, tmp_path: Path) -> None:
    sources = [world.source(c) for c in CONTEXTS]
    everything = [e for c in CONTEXTS for e in await world.all_events(c)]

    async def exported(selection: Selection) -> list[dict[str, object]]:
        path = tmp_path / "part.jsonl"
        sink = open_sink(path, "jsonl")
        await export_events(sources, sink, selection)
        sink.close()
        return read_jsonl(path)

    staff = await exported(Selection(types=frozenset({"StaffAdded", "RightGranted"})))
    assert [r["type"] for r in staff] == ["StaffAdded"] * 4 + ["RightGranted"] * 2
    window = await exported(Selection(since=hour(5), until=hour(7)))
    expected = [str(e.event_id) for e in everything if hour(5) <= e.occurred_at < hour(7)]
    assert [r["event_id"] for r in window] == expected
    assert {r["type"] for r in window} == {
        "RightGranted", "TicketTransferred", "CompanyManagerAssigned", "ClientChanged",
    }  # fmt: skip
    assert await exported(Selection(types=frozenset({"TicketOpened"}), since=hour(5))) == []


def test_export_command_writes_parquet_and_names_bad_options(world: World, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "tickets.parquet"
    urls = [
        f"--store-url=tickets={world.urls['tickets']}",
        f"--keys-url=tickets={world.urls['tickets']}",
    ]
    done = runner.invoke(cli, ["export", "-c", "tickets", "-o", str(out), *urls])
    assert done.exit_code == 0, done.output
    assert pq.read_table(out).num_rows == 2  # opened, transferred
    assert "no subject keys" not in done.output
    nowhere = f"--keys-url=sqlite:///{tmp_path}/absent.db"
    blind = runner.invoke(cli, ["export", "-c", "tickets", "-o", str(out), urls[0], nowhere])
    assert blind.exit_code == 0 and "tickets: no subject keys" in blind.output
    bad_format = runner.invoke(cli, ["export", "-o", str(tmp_path / "x.xls")])
    assert bad_format.exit_code == 2 and "--format" in bad_format.output
    bad_time = runner.invoke(cli, ["export", "-o", str(out), "--from", "yesterday"])
    assert bad_time.exit_code == 2 and "--from" in bad_time.output
    bad_type = runner.invoke(cli, ["export", "-o", str(out), "-c", "tickets", "-t", "TicketEaten"])
    assert bad_type.exit_code == 2 and "--type" in bad_type.output
    bad_url = runner.invoke(cli, ["export", "-o", str(out), "--store-url", "postgresql://x/y"])
    assert bad_url.exit_code == 2 and "--store-url" in bad_url.output


# ---------------------------------------------------------------- time travel


async def rights(world: World, login: str, at: datetime) -> history.StaffRights:
    return await history.staff_rights_at(
        world.source("identity"), world.source("departments"), login, at
    )


async def test_rights_at_follow_departments_grants_and_full_access(world: World) -> None:
    support = world.ids["support"]
    assert not (await rights(world, "anna", hour(1.5))).exists
    anna = await rights(world, "anna", hour(2.5))
    assert anna.exists and anna.departments == (support,)
    assert anna.rights["tickets.view"] == [f"department:{support}"]
    assert anna.rights["tickets.reply"] == [f"department:{support}"]
    assert "tickets.all_departments" not in anna.rights
    assert "tickets.view" not in (await rights(world, "anna", hour(7.5))).rights
    dora = await rights(world, world.ids["dora"], hour(4.5))  # by id, before the grants
    assert dora.login == "dora" and dora.rights == {}
    dora = await rights(world, "dora", hour(5))  # occurred_at <= T counts
    assert dora.rights == {
        "tickets.all_departments": ["individual"],
        "tickets.view": ["individual"],
    }
    carl = await rights(world, "carl", hour(2.5))
    assert carl.full_access and carl.rights["clients.delete"] == ["full_access"]


async def viewers(world: World, at: datetime) -> tuple[history.TicketViewers, set[tuple[str, str]]]:
    answer = await history.ticket_viewers_at(
        world.source("tickets"), world.source("identity"), world.source("departments"),
        world.source("clients"), world.ids["ticket"], at,
    )  # fmt: skip
    return answer, {(v.id, v.why) for v in answer.viewers}


async def test_who_could_see_the_ticket_at_each_moment(world: World) -> None:
    ids = world.ids
    before, _ = await viewers(world, hour(3.5))
    assert not before.exists
    opened, seen = await viewers(world, hour(4.5))
    assert opened.department_id == ids["support"] and opened.company_id == ids["company"]
    assert seen == {
        (ids["anna"], f"department:{ids['support']}"),
        (ids["carl"], "full_access"),
        (ids["c1"], "the ticket's client"),
    }
    _, seen = await viewers(world, hour(5.5))
    assert (ids["dora"], "tickets.all_departments") in seen and len(seen) == 4
    moved, seen = await viewers(world, hour(6.5))
    # In Sales now: anna's department no longer has it, boris (Sales) has no tickets.view.
    assert moved.department_id == ids["sales"]
    assert seen == {
        (ids["carl"], "full_access"),
        (ids["dora"], "tickets.all_departments"),
        (ids["c1"], "the ticket's client"),
        (ids["c2"], f"client manager of company {ids['company']}"),
    }
    _, seen = await viewers(world, hour(8.5))
    assert (ids["c1"], "the ticket's client") not in seen  # erased: cannot log in


async def test_client_state_at_opens_personal_fields_only_while_the_key_lives(world: World) -> None:
    clients, ids = world.source("clients"), world.ids
    assert not (await history.client_at(clients, ids["c2"], hour(2.5))).exists
    c2 = await history.client_at(clients, ids["c2"], hour(5))
    assert c2.card["email"] == "c2@example.com" and c2.card["phone"] is None
    assert c2.company_id == ids["company"] and not c2.company_manager
    c2 = await history.client_at(clients, ids["c2"], hour(6))
    assert c2.card["phone"] == "+49 30 1234" and c2.company_manager and c2.version == 2
    c1 = await history.client_at(clients, ids["c1"], hour(4))
    # Not yet erased at T, but its key is destroyed now: readable never again.
    assert not c1.erased and c1.card["email"] is None and c1.card["country"] == "DE"
    assert (await history.client_at(clients, ids["c1"], hour(8))).erased


def test_time_travel_commands_print_answers(world: World) -> None:
    runner = CliRunner()
    urls = [f"--store-url={c}={world.urls[c]}" for c in CONTEXTS]
    keys = [f"--keys-url={c}={world.urls[c]}" for c in ("clients", "tickets")]
    at = hour(6.5).isoformat()
    answer = runner.invoke(cli, ["rights-at", "dora", "--at", at, "--json", *urls[:2]])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.output)["rights"]["tickets.view"] == ["individual"]
    answer = runner.invoke(cli, ["ticket-viewers", world.ids["ticket"], "--at", at, *urls, *keys])
    assert answer.exit_code == 0, answer.output
    assert "tickets.all_departments" in answer.output and "client manager" in answer.output
    answer = runner.invoke(
        cli, ["client-at", world.ids["c2"], "--at", at, "--json", urls[2], keys[0]]
    )
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.output)["card"]["phone"] == "+49 30 1234"
    bad = runner.invoke(cli, ["client-at", "x", "--at", "noon"])
    assert bad.exit_code == 2 and "--at" in bad.output


# ---------------------------------------------------------------- rebuild


async def snapshot(db: ReadModelDB, projections: Sequence[Projection]) -> dict[str, list[str]]:
    async with db.engine.connect() as conn:
        return {
            table.name: sorted(repr(tuple(row)) for row in await conn.execute(select(table)))
            for projection in projections
            for table in projection.tables
        }


@pytest.mark.parametrize("context", CONTEXTS)
async def test_rebuild_in_one_pass_equals_the_live_read_models(world: World, context: str) -> None:
    """Live: each projection follows the log in pages of 2. Rebuilt: all at once, one pass."""
    spec = importlib.import_module(f"services.{context}.service").SPEC
    projections: list[Projection] = [EventTypeCounts(), *spec.projections()]
    db = await ReadModelDB.open(world.urls[context], pool_size=2)
    try:
        for projection in projections:
            await ProjectionRunner(world.stores[context], db, projection, batch_size=2).catch_up()
        live = await snapshot(db, projections)
        assert sum(len(rows) for rows in live.values()) > len(projections)
        for page_size in (3, 1000):  # a page folds many events of one ticket together
            applied = await rebuild_all(world.stores[context], db, projections, page_size=page_size)
            assert applied == len(await world.all_events(context))
            assert await snapshot(db, projections) == live
        head = await world.stores[context].head_position()
        for projection in projections:
            assert (await db.checkpoint(checkpoint_name(projection.name))).position == head
    finally:
        await db.close()


async def test_rebuild_in_processes_equals_the_live_read_models(world: World) -> None:
    """Every context's read models split in two groups, all groups in two processes."""
    dbs = {c: await ReadModelDB.open(world.urls[c], pool_size=2) for c in CONTEXTS}
    try:
        live = {}
        for context, db in dbs.items():
            for projection in service_read_models(context):
                await ProjectionRunner(world.stores[context], db, projection).catch_up()
            live[context] = await snapshot(db, service_read_models(context))
        jobs = [
            job
            for c in CONTEXTS
            for job in plan(c, world.urls[c], world.urls[c], service_read_models(c), 2)
        ]
        assert {len(job.projections) for job in jobs} != {len(service_read_models("tickets"))}
        reported: dict[str, int] = {}

        def progress(job: object, n: int) -> None:
            label = getattr(job, "label")  # noqa: B009
            reported[label] = reported.get(label, 0) + n

        results = await rebuild_in_processes(jobs, 2, progress)
        for job, result in zip(jobs, results, strict=True):
            assert result.job == job
            assert result.events == reported[job.label] == len(await world.all_events(job.service))
        for context, db in dbs.items():
            assert await snapshot(db, service_read_models(context)) == live[context]
    finally:
        for db in dbs.values():
            await db.close()


async def test_a_log_split_by_stream_rebuilds_to_the_live_read_models(world: World) -> None:
    """``rebuild_logs``: the tickets log split by stream across two processes feeding
    its partitionable read models, the catalog reading only its event types; the
    same rows as the live read models, every checkpoint at the head, no part's
    checkpoint or unfinished mark left."""
    db = await ReadModelDB.open(world.urls["tickets"], pool_size=2)
    store = world.stores["tickets"]
    models = service_read_models("tickets")
    try:
        for projection in models:
            await ProjectionRunner(store, db, projection).catch_up()
        live = await snapshot(db, models)
        events = len(await world.all_events("tickets"))
        log = LogToRebuild("tickets", world.urls["tickets"], world.urls["tickets"], models, events)
        planned: list[RebuildJob] = []
        results = await rebuild_logs([log], 2, planned=planned.extend)
        parts = [j for j in planned if j.partition is not None]
        assert len(parts) == 2 and {p.name for p in models if p.partitionable} == set(
            parts[0].projections
        )
        [catalog] = [j for j in planned if j.partition is None]
        assert catalog.projections == ("catalog_directory",) and catalog.types
        assert sum(r.events for r in results if r.job.partition) == events
        assert await snapshot(db, models) == live
        head = await store.head_position()
        async with db.reading() as conn:
            rows = await conn.execute(select(checkpoints.c.name, checkpoints.c.position))
            names = {row[0]: row[1] for row in rows}
        assert {names[checkpoint_name(p.name)] for p in models} == {head}
        assert not [n for n in names if "#" in n or n.startswith("rebuilding:")]
    finally:
        await db.close()


async def test_a_start_discards_a_read_model_a_split_rebuild_left_unfinished(
    world: World,
) -> None:
    """A split rebuild that stopped before its end (a part's checkpoint, the mark,
    the rows of the parts so far, no checkpoint of the read model's own): who next
    runs the read model (under its lease) drops it and builds it from the start."""
    db = await ReadModelDB.open(world.urls["tickets"], pool_size=2)
    store = world.stores["tickets"]
    try:
        queue = TicketQueue()
        await ProjectionRunner(store, db, queue).catch_up()
        live = await snapshot(db, [queue])
        log = LogToRebuild("tickets", world.urls["tickets"], world.urls["tickets"], [queue], 1)
        head = await prepare_split(log)
        half = RebuildJob("tickets", log.store_url, log.read_model_url, ("ticket_queue",),
                          partition=(0, STREAM_BUCKETS), until=head)  # fmt: skip
        assert (await rebuild_job(half)).events > 0  # rows in, but no checkpoint of its own
        # Applied again on top of them, the same events would clash (or count twice).
        written = await snapshot(db, [queue])
        runner = ProjectionRunner(store, db, queue)
        await runner.start()  # a service starting, before it holds the lease: the
        assert await snapshot(db, [queue]) == written  # rebuild may still run, keep all
        await runner.catch_up()  # who runs it (under the lease) discards and rebuilds
        assert await snapshot(db, [queue]) == live
        async with db.reading() as conn:
            names = [row[0] for row in await conn.execute(select(checkpoints.c.name))]
        assert not [n for n in names if "ticket_queue#" in n or n.startswith("rebuilding:")]
    finally:
        await db.close()


async def test_a_rebuild_builds_indexes_and_keys_last_and_a_start_restores_missing_ones(
    postgres_url: str,
) -> None:
    queue = TicketQueue()
    wanted = {index.name for index in queue_tickets.indexes}
    assert len(wanted) >= 5
    store = await open_event_store(postgres_url, pool_size=1)
    db = await ReadModelDB.open(postgres_url, pool_size=1)

    async def indexes() -> set[str | None]:
        async with db.reading() as conn:
            found = await conn.run_sync(lambda c: inspect(c).get_indexes("tickets"))
        return {index["name"] for index in found}

    async def timeline_key() -> list[str]:
        """The primary key of ``ticket_entries``, which the queue only adds rows to."""
        async with db.reading() as conn:
            found = await conn.run_sync(lambda c: inspect(c).get_pk_constraint("ticket_entries"))
        columns: list[str] = found["constrained_columns"]
        return columns

    try:
        await drop(db, [queue])  # as a rebuild begins (and a stopped one leaves it)
        assert await indexes() == set()
        assert await timeline_key() == []
        await db.create_tables(queue.metadata)  # what the service's start does
        assert await indexes() == wanted
        assert await timeline_key() == ["ticket_id", "version"]
        await rebuild_all(store, db, [queue])
        assert await indexes() == wanted
        assert await timeline_key() == ["ticket_id", "version"]
    finally:
        await db.close()
        await store.close()


def test_rebuild_refuses_while_the_service_runs_its_read_models(tmp_path: Path) -> None:
    """Nothing is dropped under a running service: it holds its read models' leases."""
    env = {
        "TICKETS_EVENT_STORE_URL": f"sqlite:///{tmp_path}/tickets.db",
        "TICKETS_READ_MODEL_URL": f"sqlite:///{tmp_path}/tickets-read.db",
    }
    holding, release = threading.Event(), threading.Event()

    def running_service() -> None:
        async def main() -> None:
            db = await ReadModelDB.open(env["TICKETS_READ_MODEL_URL"], pool_size=1)
            leases = Leases(db)

            async def projections() -> None:
                holding.set()
                await asyncio.to_thread(release.wait, 30)

            try:
                await leases.run(checkpoint_name("ticket_queue"), projections)
            finally:
                await leases.close()
                await db.close()

        asyncio.run(main())

    service = threading.Thread(target=running_service)
    service.start()
    try:
        assert holding.wait(10)
        busy = CliRunner().invoke(cli, ["rebuild", "tickets"], env=env)
        assert busy.exit_code == 1, busy.output
        assert "projection:ticket_queue" in busy.output and "stop it first" in busy.output
    finally:
        release.set()
        service.join(10)
    done = CliRunner().invoke(cli, ["rebuild", "tickets"], env=env)
    assert done.exit_code == 0, done.output
    assert "tickets: rebuilt ticket_queue from 0 events" in done.output


def test_rebuild_all_covers_every_read_model_of_every_service(tmp_path: Path) -> None:
    env = {}
    for service in catalogue.names():
        env[f"{service.upper()}_EVENT_STORE_URL"] = f"sqlite:///{tmp_path}/{service}.db"
        env[f"{service.upper()}_READ_MODEL_URL"] = f"sqlite:///{tmp_path}/{service}-read.db"
    for workers in ("1", "2"):  # two: SQLite read models, so one process per service
        done = CliRunner().invoke(cli, ["rebuild", "all", "--workers", workers], env=env)
        assert done.exit_code == 0, done.output
        for service in catalogue.names():
            for projection in service_read_models(service):
                assert f"{service}: rebuilt {projection.name} from 0 events" in done.output
    bad = CliRunner().invoke(cli, ["rebuild", "tickets", "--projection", "nope"], env=env)
    assert bad.exit_code == 2 and "--projection" in bad.output
