"""Operator commands: ``python -m shared.cli --help``.

* ``rebuild SERVICE|all [--projection NAME]`` – drop read models and replay
  the service's whole log into them (one pass for all), with a progress bar.
* ``status SERVICE`` – each projection's checkpoint and lag, and the relay's.
* ``relay SERVICE`` – publish what the store holds to the topic and exit.
* ``keys DIR`` – write a fresh set of Ed25519 keys (identity's, each service's own).
* ``refill-copies SERVICE [--copy NAME]`` – fill again the tables a service
  keeps from other contexts' topics (``shared.messaging.copies``), with a progress bar.
* ``dead-letters list|retry|drop SERVICE [ID]`` – the facts a service's consumer
  parked after repeated failures (``shared.messaging.consumer``): list them, ask
  the running service to apply one again (and wait for the outcome), or give up on it.
* ``export``, ``rights-at``, ``ticket-viewers``, ``client-at`` – analysing
  history (``analytics``): export events, answer "as of T" questions.

The service's settings come from the same environment variables the service
uses (``EVENT_STORE_URL``, ``READ_MODEL_URL``, ``VAR_DIR``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import cast

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy import ColumnElement, select, update

from shared import catalogue
from shared.access.keys import write_fresh_keys
from shared.eventstore import open_event_store
from shared.messaging.copies import refill
from shared.messaging.relay import Relay
from shared.messaging.signatures import FactVerifier
from shared.names import checkpoint_name, inbound_group, refill_lease, relay_checkpoint, topic_of
from shared.privacy.shredding import personal_fields
from shared.projections.replay import (
    LogToRebuild,
    RebuildJob,
    collect_rarely,
    rebuild_all,
    rebuild_logs,
    service_read_models,
)
from shared.projections.runner import Projection
from shared.readmodel.database import ReadModelDB, dead_letters
from shared.readmodel.leases import LeaseBusy, Leases
from shared.runtime.service import ServiceSpec
from shared.runtime.settings import ServiceSettings
from shared.runtime.sources import Source, resolve

cli = typer.Typer(help=__doc__, no_args_is_help=True)
console = Console()


def _progress_bars(*extra: TextColumn) -> Progress:
    """A bar per task: name, bar, done/total, ``extra`` columns, time left."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeRemainingColumn(),
        console=console,
    )


def _spec(service: str) -> ServiceSpec:
    try:
        return cast(ServiceSpec, catalogue.spec(service))
    except catalogue.UnknownService as unknown:
        raise typer.BadParameter(str(unknown)) from None


@dataclass(frozen=True)
class _Target:
    """A service to rebuild: where its log and read models are, and which ones."""

    service: str
    source: Source
    projections: list[Projection]


def _target(service: str, only: str | None) -> _Target:
    chosen = [p for p in service_read_models(service) if only in (None, p.name)]
    if not chosen:
        raise typer.BadParameter(f"{service} has no projection {only!r}", param_hint="--projection")
    (source,) = resolve([service])
    return _Target(service, source, chosen)


async def _rebuild(target: _Target, progress: Progress) -> dict[str, int]:
    """Replay one service's log into its read models (all, or ``only``), one pass."""
    store = await open_event_store(target.source.store_url, namespace=target.service)
    db = await ReadModelDB.open(target.source.keys_url)
    try:
        task = progress.add_task(target.service, total=await store.count(), rate="")
        applied = await rebuild_all(
            store, db, target.projections, lambda n: _advance(progress, task, n)
        )
    finally:
        await db.close()
        await store.close()
    return dict.fromkeys((p.name for p in target.projections), applied)


def _advance(progress: Progress, task: TaskID, n: int) -> None:
    progress.advance(task, n)
    speed = progress.tasks[task].speed
    progress.update(task, rate=f"{speed:,.0f} ev/s" if speed else "")


async def _rebuild_in_processes(
    targets: list[_Target], workers: int, progress: Progress
) -> dict[str, dict[str, int]]:
    """Every service's read models split into jobs, run by ``workers`` processes."""
    logs: list[LogToRebuild] = []
    for target in targets:
        source = target.source
        store = await open_event_store(source.store_url, namespace=target.service, pool_size=1)
        try:
            events = await store.count()
        finally:
            await store.close()
        logs.append(
            LogToRebuild(
                target.service, source.store_url, source.keys_url, target.projections, events
            )
        )
    counts = {log.service: log.events for log in logs}
    tasks: dict[RebuildJob, TaskID] = {}

    def planned(jobs: list[RebuildJob]) -> None:
        for job in jobs:
            total = round(counts[job.service] * job.share)
            tasks[job] = progress.add_task(job.label, total=total, rate="")

    results = await rebuild_logs(
        logs, workers, lambda job, n: _advance(progress, tasks[job], n), planned
    )
    rebuilt: dict[str, dict[str, int]] = {}
    for result in results:
        applied = rebuilt.setdefault(result.job.service, {})
        for name in result.job.projections:  # a read model split by stream: its parts' sum
            applied[name] = applied.get(name, 0) + result.events
    return rebuilt


async def _rebuild_services(
    services: list[str], only: str | None, workers: int
) -> dict[str, dict[str, int]]:
    targets = [_target(service, only) for service in services]
    with _progress_bars(TextColumn("{task.fields[rate]}")) as progress:
        async with contextlib.AsyncExitStack() as held:
            for target in targets:
                await held.enter_async_context(_projection_leases(target))
            if workers > 1:
                return await _rebuild_in_processes(targets, workers, progress)
            return {target.service: await _rebuild(target, progress) for target in targets}


@contextlib.asynccontextmanager
async def _projection_leases(target: _Target) -> AsyncIterator[None]:
    """Hold the leases of the read models being rebuilt (``LeaseBusy`` while the
    service runs them): nothing is dropped under a running service, and a replica
    starting meanwhile stands by until the rebuild is over."""
    db = await ReadModelDB.open(target.source.keys_url, pool_size=1)
    leases = Leases(db)
    try:
        async with leases.holding_now([checkpoint_name(p.name) for p in target.projections]):
            yield
    finally:
        await leases.close()
        await db.close()


@cli.command()
def rebuild(
    service: str = typer.Argument(
        ..., help="identity, departments, tickets, clients, notifier, or all"
    ),
    projection: str | None = typer.Option(None, help="only this read model (default: all)"),
    workers: int = typer.Option(
        1, min=1, help="processes sharing the work (a core each); 1: one pass per service"
    ),
) -> None:
    """Drop read models and replay the service's whole event log into them (one pass).

    Store and read-model URLs: ``<SERVICE>_EVENT_STORE_URL`` / ``<SERVICE>_READ_MODEL_URL``
    when set, else the service's own settings (``EVENT_STORE_URL``, ``READ_MODEL_URL``, ...).
    With ``--workers N`` the read models are split into groups of similar cost, each
    group replays the log in its own process, and all services' groups run side by side.
    """
    services = list(catalogue.names()) if service == "all" else [service]
    for name in services:
        _spec(name)  # an unknown name fails before anything is dropped
    collect_rarely()
    try:
        rebuilt = asyncio.run(_rebuild_services(services, projection, workers))
    except LeaseBusy as busy:
        console.print(
            f"[red]cannot rebuild: {busy} (the service runs these read models);"
            " stop it first (a replica starting during the rebuild waits for its end)"
        )
        raise typer.Exit(1) from None
    for name, applied in rebuilt.items():
        for projection_name, count in applied.items():
            console.print(f"{name}: rebuilt [bold]{projection_name}[/bold] from {count:,} events")


async def _status(service: str) -> Table:
    spec = _spec(service)
    settings = ServiceSettings().resolved(service, catalogue.spec(service).port)
    store = await open_event_store(settings.event_store_url, namespace=service)
    db = await ReadModelDB.open(settings.read_model_url)
    try:
        head = await store.head_position()
        table = Table("part", "checkpoint", "store head", "lag (positions)")
        for projection in spec.read_models():
            position = (await db.checkpoint(checkpoint_name(projection.name))).position
            table.add_row(
                f"projection {projection.name}", str(position), str(head), str(head - position)
            )
        relayed = await db.checkpoint(relay_checkpoint(topic_of(service, settings.topic_prefix)))
        relay_position, published = relayed.position, relayed.published
        table.add_row(
            f"relay ({published:,} acknowledged)",
            str(relay_position),
            str(head),
            str(head - relay_position),
        )
    finally:
        await db.close()
        await store.close()
    return table


@cli.command()
def status(service: str) -> None:
    """Checkpoints and lag of the service's read models and relay."""
    console.print(asyncio.run(_status(service)))


async def _refill(service: str, only: str | None, progress: Progress) -> dict[str, int]:
    spec = _spec(service)
    chosen = [c for c in spec.copies if only in (None, c.name)]
    if not chosen:
        names = ", ".join(c.name for c in spec.copies) or "none"
        raise typer.BadParameter(
            f"{service} keeps no copy {only!r} (its copies: {names})"
            if only
            else f"{service} keeps no copies of other contexts' facts",
            param_hint="--copy",
        )
    settings = ServiceSettings().resolved(service, catalogue.spec(service).port)
    db = await ReadModelDB.open(settings.read_model_url, pool_size=2)
    leases = Leases(db)
    applied: dict[str, int] = {}
    verifier = FactVerifier(settings.identity_verifying_key(), consumer=f"{service}.refill")
    try:
        # The refill's own lease, and the projections' (held by any running replica).
        held = [refill_lease(service), *(checkpoint_name(p.name) for p in spec.read_models())]
        async with leases.holding_now(held):
            for copy in chosen:
                task = progress.add_task(f"{service} {copy.name}", total=None, rate="")

                def advance(done: int, total: int, task: TaskID = task) -> None:
                    progress.update(task, completed=done, total=total)

                applied[copy.name] = await refill(
                    copy,
                    db,
                    settings.kafka_bootstrap_servers,
                    inbound_group(service, settings.topic_prefix),
                    settings.topic_prefix,
                    advance,
                    admit=verifier.admit,
                )
    finally:
        await leases.close()
        await db.close()
    return applied


@cli.command()
def refill_copies(
    service: str = typer.Argument(..., help="identity, tickets or clients"),
    copy: str | None = typer.Option(None, help="only this copy (default: all of the service's)"),
) -> None:
    """Fill a service's copies of other contexts' facts again from their topics.

    Each copy's tables are dropped and the topics applied from their start up to
    where the service's consumer group stands, so the service goes on from there
    when it starts. The service must be stopped (exit 1 while it runs).
    """
    with _progress_bars() as progress:
        try:
            applied = asyncio.run(_refill(service, copy, progress))
        except LeaseBusy as busy:
            console.print(f"[red]cannot refill: {busy} (the service runs); stop it first")
            raise typer.Exit(1) from None
    for name, count in applied.items():
        console.print(f"{service}: refilled [bold]{name}[/bold] from {count:,} events")


async def _relay(service: str) -> int:
    settings = ServiceSettings().resolved(service, catalogue.spec(service).port)
    store = await open_event_store(settings.event_store_url, namespace=service)
    db = await ReadModelDB.open(settings.read_model_url)
    try:
        spec = catalogue.spec(service)
        relay = Relay(
            store,
            db,
            settings.kafka_bootstrap_servers,
            topic_of(service, settings.topic_prefix),
            # Identity's facts are published signed, by this command as by the service.
            signer=settings.identity_private_key()
            if getattr(spec, "signs_identity_facts", False)
            else None,
        )
        return await relay.publish_pending()
    finally:
        await db.close()
        await store.close()


@cli.command()
def keys(
    directory: Path = typer.Argument(..., help="where to write them (must not hold keys yet)"),
) -> None:
    """Write a fresh set of Ed25519 keys: identity's and each service's own.

    ``identity.key`` goes to identity alone (IDENTITY_SIGNING_KEY), ``identity.pub``
    to every service (IDENTITY_PUBLIC_KEY); ``services/<name>.key`` to that service
    (SERVICE_SIGNING_KEY), ``services/<name>.pub`` to the services it calls
    (SERVICE_PUBLIC_KEYS). Files and directories are readable by the owner only.
    """
    try:
        written = write_fresh_keys(directory, catalogue.names())
    except FileExistsError as exists:
        console.print(f"[red]{exists}")
        raise typer.Exit(1) from None
    for path in written:
        console.print(str(path))


@cli.command()
def relay(service: str) -> None:
    """Publish what the service's store holds to its topic, then exit."""
    console.print(f"published {asyncio.run(_relay(service)):,} events")


class DeadLetterAction(StrEnum):
    list = "list"
    retry = "retry"
    drop = "drop"


def _groups_of(service: str, prefix: str) -> ColumnElement[bool]:
    """The service's consumer groups (``<prefix><service>.inbound``, and any other of its
    own, like the notifier's stream): the read-model database may be shared."""
    return dead_letters.c.group_id.startswith(f"{prefix}{service}.", autoescape=True)


async def _list_dead_letters(db: ReadModelDB, groups: ColumnElement[bool]) -> Table:
    table = Table(
        "id", "topic", "partition", "offset", "key", "event", "failures", "parked at", "reason"
    )
    async with db.reading() as conn:
        rows = await conn.execute(select(dead_letters).where(groups).order_by(dead_letters.c.id))
        for row in rows:
            waiting = " (retry asked)" if row.retry_requested_at is not None else ""
            if row.dropped_at is not None:
                waiting = " (dropped)"
            table.add_row(
                str(row.id),
                row.topic,
                str(row.partition),
                str(row.offset),
                row.key or "",
                f"{row.event_type or '?'} {row.event_id or ''}".strip(),
                f"{row.failures}{waiting}",
                row.parked_at.isoformat(timespec="seconds"),
                row.reason,
            )
    return table


async def _dead_letters(
    action: DeadLetterAction, service: str, letter: int | None, wait: float
) -> int:
    """Carry out ``action``; the exit code (0 done, 1 not found or still failing)."""
    settings = ServiceSettings().resolved(service, _spec(service).port)
    groups = _groups_of(service, settings.topic_prefix)
    db = await ReadModelDB.open(settings.read_model_url, pool_size=2)
    try:
        if action is DeadLetterAction.list:
            console.print(await _list_dead_letters(db, groups))
            return 0
        if letter is None:
            raise typer.BadParameter(f"{action} needs the ID (see `dead-letters list`)")
        mine = (dead_letters.c.id == letter) & groups
        async with db.transaction() as conn:
            now = datetime.now(UTC)
            stamp = "dropped_at" if action is DeadLetterAction.drop else "retry_requested_at"
            done = {stamp: now}
            changed = await conn.execute(
                update(dead_letters).where(mine, dead_letters.c.dropped_at.is_(None)).values(**done)
            )
        if not changed.rowcount:
            console.print(f"[red]{service} has no parked fact {letter} (dropped already?)")
            return 1
        if action is DeadLetterAction.drop:
            console.print(f"{service}: dropped parked fact {letter}; it will not be applied")
            return 0
        # The running service's consumer holds the handlers: it applies the fact and
        # removes the row, or puts it back with the new reason.
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            async with db.reading() as conn:
                row = (await conn.execute(select(dead_letters).where(mine))).first()
            if row is None:
                console.print(f"{service}: parked fact {letter} applied")
                return 0
            if row.retry_requested_at is None:
                console.print(f"[red]{service}: parked fact {letter} failed again: {row.reason}")
                return 1
        console.print(
            f"[yellow]{service}: retry of {letter} asked; the service has not taken it "
            f"within {wait:g} s (is it running?)"
        )
        return 1
    finally:
        await db.close()


@cli.command("dead-letters")
def dead_letters_command(
    action: DeadLetterAction = typer.Argument(..., help="list, retry or drop"),
    service: str = typer.Argument(..., help="identity, tickets, clients, ..."),
    letter: int | None = typer.Argument(None, metavar="ID", help="the parked fact (retry, drop)"),
    wait: float = typer.Option(30.0, help="seconds a retry waits for the running service"),
) -> None:
    """Facts the service's consumer parked after failing on them repeatedly.

    ``list`` shows them (where they are on the broker, the event's type, the
    reason); ``retry ID`` asks the running service to read the fact from the
    broker and apply it again, and waits for the outcome; ``drop ID`` gives up
    on it (listed as dropped, and left out of refills of copies). The service's
    ``/ready`` names a problem while any stays parked.
    """
    raise typer.Exit(asyncio.run(_dead_letters(action, service, letter, wait)))


SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "events"


def event_schemas(service: str) -> dict[str, object] | None:
    """The JSON Schemas of what ``service`` publishes on its topic (None: no events yet)."""
    registry = catalogue.spec(service).events
    if not registry.json_schemas():
        return None
    events: dict[str, object] = {}
    for name, schema in registry.json_schemas().items():
        sealed = personal_fields(registry.model(name))
        for field in sealed:
            prop = schema.get("properties", {}).get(field)
            if isinstance(prop, dict):
                prop["x-sealed"] = True
                # Published text, frozen with the schemas (the module is now
                # shared/privacy/shredding.py).
                prop["description"] = (
                    "personal data, sealed with the subject's key (shared/shredding.py); "
                    "null once the subject was erased"
                )
        events[name] = {"schema_version": registry.model(name).schema_version, "schema": schema}
    return {
        "topic": topic_of(service),
        "key": "the stream id (order holds per aggregate)",
        "headers": ["event-type", "event-id"],
        "envelope": "event_id, type, schema_version, stream, stream_version, position, "
        "occurred_at, correlation_id, causation_id, actor {id, kind, impersonator_id}, data",
        "events": events,
    }


def render_schemas(service: str) -> str | None:
    schemas = event_schemas(service)
    if schemas is None:
        return None
    return json.dumps(schemas, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


@cli.command()
def schemas() -> None:
    """Write docs/events/<service>.json: the schema of every event each service publishes."""
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for service in catalogue.names():
        text = render_schemas(service)
        if text is not None:
            (SCHEMA_DIR / f"{service}.json").write_text(text)
            console.print(f"wrote docs/events/{service}.json")


for register in catalogue.cli_plugins():
    register(cli)


if __name__ == "__main__":
    cli()
