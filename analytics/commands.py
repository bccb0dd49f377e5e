"""The analysts' commands, registered on ``python -m shared.cli`` (see ``register``).

* ``export``          – events to JSON Lines or Parquet, by context, type, time range;
* ``rights-at``       – a staff member's effective rights at T, with their sources;
* ``ticket-viewers``  – who could see a ticket at T, and why;
* ``client-at``       – a client's state at T.

Times are ISO 8601 (``2026-03-01``, ``2026-03-01T12:00:00Z``); without a zone, UTC.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

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

from analytics import history
from analytics.export import FORMATS, Selection, export_events, open_sink
from analytics.sources import (
    CONTEXTS,
    PAGE_SIZE,
    SourceError,
    check_contexts,
    parse_urls,
    registry_of,
)
from shared.runtime.sources import Source, resolve

console = Console()
T = TypeVar("T")

STORE_URL_HELP = (
    "an event store: context=URL (a bare URL when one context is read); repeatable. "
    "Default: <CONTEXT>_EVENT_STORE_URL, else the service's own settings"
)
KEYS_URL_HELP = (
    "where a context's subject keys are (its read-model database): context=URL; repeatable. "
    "Default: <CONTEXT>_READ_MODEL_URL, else the service's own settings"
)


def parse_moment(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 moment (a bare date is its midnight); naive means UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time such as 2026-03-01T12:00:00Z", param_hint=option
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; bad input about sources becomes a usage error naming the option."""
    try:
        return asyncio.run(work)
    except SourceError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.option) from None


def _sources(contexts: list[str], store_urls: list[str], keys_urls: list[str]) -> dict[str, Source]:
    try:
        chosen = check_contexts(contexts)
        stores = parse_urls(store_urls, chosen, "--store-url")
        keys = parse_urls(keys_urls, chosen, "--keys-url")
    except SourceError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.option) from None
    return {s.context: s for s in resolve(chosen, stores, keys)}


def _print_json(value: object) -> None:
    console.print_json(json.dumps(value, default=str, ensure_ascii=False))


# ---------------------------------------------------------------- export


class _Bars:
    """A rich progress bar per context."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def start(self, context: str, total: int) -> None:
        self.tasks[context] = self.progress.add_task(context, total=total)

    def advance(self, context: str, events: int) -> None:
        self.progress.advance(self.tasks[context], events)


def export(
    output: Path = typer.Option(..., "--output", "-o", help="file to write"),
    context: list[str] = typer.Option(
        [], "--context", "-c", help=f"repeatable; default: all ({', '.join(CONTEXTS)})"
    ),
    event_type: list[str] = typer.Option([], "--type", "-t", help="event type; repeatable"),
    since: str | None = typer.Option(None, "--from", help="occurred_at at or after this"),
    until: str | None = typer.Option(None, "--to", help="occurred_at before this"),
    fmt: str | None = typer.Option(
        None, "--format", help="jsonl or parquet (default: from the file's suffix)"
    ),
    store_url: list[str] = typer.Option([], "--store-url", help=STORE_URL_HELP),
    keys_url: list[str] = typer.Option([], "--keys-url", help=KEYS_URL_HELP),
    page_size: int = typer.Option(PAGE_SIZE, "--page-size", min=1, help="events read at once"),
) -> None:
    """Export events to JSON Lines or Parquet: envelope + data as a replay sees it."""
    chosen_format = fmt or {".jsonl": "jsonl", ".parquet": "parquet"}.get(output.suffix)
    if chosen_format not in FORMATS:
        raise typer.BadParameter(
            f"say jsonl or parquet (the file name {output.name!r} does not tell)",
            param_hint="--format",
        )
    start, end = parse_moment(since, "--from"), parse_moment(until, "--to")
    if start is not None and end is not None and start >= end:
        raise typer.BadParameter("must be later than --from", param_hint="--to")
    sources = _sources(context or list(CONTEXTS), store_url, keys_url)
    known = set().union(*(registry_of(c).models() for c in sources))
    unknown = sorted(set(event_type) - known)
    if unknown:
        raise typer.BadParameter(
            f"no event type {', '.join(unknown)} in {', '.join(sources)}", param_hint="--type"
        )
    if not output.parent.exists():
        raise typer.BadParameter(f"no directory {output.parent}", param_hint="--output")
    selection = Selection(types=frozenset(event_type), since=start, until=end)
    sink = open_sink(output, chosen_format)
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            report = _run(
                export_events(sources.values(), sink, selection, _Bars(progress), page_size)
            )
    finally:
        sink.close()
    for name, count in report.written.items():
        console.print(f"{name}: {count:,} events")
    console.print(f"wrote {report.total:,} events to {output} ({chosen_format})")
    for name in report.without_keys:
        console.print(
            f"[yellow]{name}: no subject keys at {sources[name].keys_url}; "
            "its personal fields are all null (see --keys-url)[/yellow]"
        )


# ---------------------------------------------------------------- time travel


AT_HELP = "the moment (ISO 8601; naive: UTC); events with occurred_at <= it count"


def _at(value: str) -> datetime:
    moment = parse_moment(value, "--at")
    assert moment is not None
    return moment


def rights_at(
    staff: str = typer.Argument(..., help="the staff member's id or login"),
    at: str = typer.Option(..., "--at", help=AT_HELP),
    store_url: list[str] = typer.Option([], "--store-url", help=STORE_URL_HELP),
    keys_url: list[str] = typer.Option([], "--keys-url", help=KEYS_URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """What rights a staff member had at a moment, and where each came from."""
    moment = _at(at)
    s = _sources(["identity", "departments"], store_url, keys_url)
    member = _run(history.staff_rights_at(s["identity"], s["departments"], staff, moment))
    if as_json:
        _print_json({"at": moment.isoformat(), **dataclasses.asdict(member)})
        return
    if not member.exists:
        console.print(f"no staff member {staff!r} at {moment.isoformat()}")
        raise typer.Exit(1)
    policy = member.ip_policy
    console.print(
        f"[bold]{member.login}[/bold] ({member.staff_id}) at {moment.isoformat()}: "
        f"{'DISABLED (could not log in), ' if member.disabled else ''}"
        f"full access {'yes' if member.full_access else 'no'}, "
        f"departments {', '.join(member.departments) or '-'}, "
        f"works from {'anywhere' if policy.mode == 'any' else ', '.join(policy.allowed)}"
    )
    table = Table("right", "sources")
    for right, sources in member.rights.items():
        table.add_row(right, ", ".join(sources))
    console.print(table)


def ticket_viewers(
    ticket_id: str = typer.Argument(..., help="the ticket's id"),
    at: str = typer.Option(..., "--at", help=AT_HELP),
    store_url: list[str] = typer.Option([], "--store-url", help=STORE_URL_HELP),
    keys_url: list[str] = typer.Option([], "--keys-url", help=KEYS_URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Who could see a ticket at a moment (staff and clients), and why."""
    moment = _at(at)
    s = _sources(["tickets", "identity", "departments", "clients"], store_url, keys_url)
    answer = _run(
        history.ticket_viewers_at(
            s["tickets"], s["identity"], s["departments"], s["clients"], ticket_id, moment
        )
    )
    if as_json:
        _print_json({"at": moment.isoformat(), **dataclasses.asdict(answer)})
        return
    if not answer.exists:
        console.print(f"no ticket {ticket_id!r} at {moment.isoformat()}")
        raise typer.Exit(1)
    console.print(
        f"ticket {answer.ticket_id} at {moment.isoformat()}: {answer.status}, "
        f"department {answer.department_id or '- (messages queue)'}, "
        f"assignee {answer.assignee_id or '-'}, client {answer.client_id}, "
        f"company {answer.company_id or '-'}"
    )
    table = Table("kind", "id", "login", "why")
    for viewer in answer.viewers:
        table.add_row(viewer.kind, viewer.id, viewer.login, viewer.why)
    console.print(table)


def client_at(
    client_id: str = typer.Argument(..., help="the client's id"),
    at: str = typer.Option(..., "--at", help=AT_HELP),
    store_url: list[str] = typer.Option([], "--store-url", help=STORE_URL_HELP),
    keys_url: list[str] = typer.Option([], "--keys-url", help=KEYS_URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """A client's state at a moment (personal fields only while the key exists)."""
    moment = _at(at)
    s = _sources(["clients"], store_url, keys_url)
    state = _run(history.client_at(s["clients"], client_id, moment))
    if as_json:
        _print_json({"at": moment.isoformat(), **dataclasses.asdict(state)})
        return
    if not state.exists:
        console.print(f"no client {client_id!r} at {moment.isoformat()}")
        raise typer.Exit(1)
    table = Table("field", "value", title=f"client {client_id} at {moment.isoformat()}")
    rows = {
        **state.card,
        "erased": state.erased,
        "version": state.version,
        "penalty_points": state.penalty_points,
        "services_suspended": state.services_suspended,
        "open_notices": state.open_notices,
        "company_id": state.company_id,
        "company_manager": state.company_manager,
    }
    for name, value in rows.items():
        table.add_row(name, "null" if value is None else json.dumps(value, ensure_ascii=False))
    console.print(table)


def register(cli: typer.Typer) -> None:
    """Add the analysts' commands to the operator CLI."""
    cli.command()(export)
    cli.command("rights-at")(rights_at)
    cli.command("ticket-viewers")(ticket_viewers)
    cli.command("client-at")(client_at)
