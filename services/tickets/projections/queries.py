"""Queue reads on the ``ticket_queue`` read model: who sees what, fast.

A caller's view is a union of disjoint *slices*, each a plain condition an
index serves (see ``queue.py``):

* a client: their own tickets, or (a company's client manager) the tickets
  of the company's current members;
* staff: one slice per department of theirs (or one for everything with
  ``tickets.all_departments``), the tickets assigned to them elsewhere, and
  the "messages" queue of threads without a department (for staff who may
  message clients, see ``services.tickets.app.visibility``).

A page reads the first ``offset + limit`` rows of every (slice, status) pair
through its index and merges them, so a staff member's first page costs a
few index probes however many tickets there are (PostgreSQL: a Merge Append
of index scans). The total comes from ``ticket_counts`` for slices only
departments and statuses narrow, and is counted otherwise (a client's or an
assignee's tickets are few); both in one statement, and so are the counts per
status of a queue page (``totals_by_status``: the same sources grouped by status).

The SQL is written here as text with bound parameters, once per shape of
query (cached): building the same union with the expression language costs
milliseconds per request in Python, more than PostgreSQL needs to answer it.
Only names from the fixed lists below ever enter the text; every value is a
parameter, except the page's limit and offset, integers written into the text:
as parameters, PostgreSQL's generic plan of the prepared statement cannot know
the LIMIT, so it planned the whole union again on every call (about 2 of the 3
ms of a first page at 1,000,000 tickets); as literals it keeps one plan.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.selectable import TextualSelect

from services.tickets.projections.queue import NO_DEPARTMENT, tickets

Status = Literal["open", "answered", "closed"]
STATUSES: tuple[Status, ...] = ("open", "answered", "closed")
Sort = Literal["waiting", "deadline", "updated", "-updated", "opened", "-opened"]

_KEYS: dict[str, tuple[str, bool]] = {
    "waiting": ("waiting_key", False),
    "deadline": ("due_key", False),
    "updated": ("updated_at", False),
    "-updated": ("updated_at", True),
    "opened": ("opened_at", False),
    "-opened": ("opened_at", True),
}

COLUMNS: tuple[str, ...] = (
    "ticket_id", "number", "client_id", "company_id", "project_id", "department_id", "category_id",
    "subject", "status", "origin", "message_ref", "replies_forbidden", "paid", "assignee_id",
    "opened_at", "updated_at", "waiting_since", "waiting_key", "due_at", "due_key",
    "closed_at", "close_reason", "messages", "last_message_at", "rating", "version",
)  # fmt: skip
"""What a queue row shows (and sorts by)."""


@dataclass(frozen=True)
class Scope:
    """What one caller may see (before filters)."""

    everything: bool = False
    departments: tuple[str, ...] = ()
    assignee_id: str | None = None  # tickets assigned to the caller, wherever they are
    messages: bool = False  # threads without a department
    clients: tuple[str, ...] | None = None  # a client's view: these clients' tickets


@dataclass(frozen=True)
class QueueFilter:
    status: tuple[Status, ...] = ()
    department_id: str | None = None  # "none": the messages queue
    assignee_id: str | None = None  # "none": nobody assigned
    client_id: str | None = None
    number: int | None = None


class _Params:
    """Bound parameters, named in order of use, so one shape always gives one text."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f":{name}"

    def many(self, values: tuple[str, ...]) -> str:
        return "(" + ", ".join(self(v) for v in values) + ")"


@dataclass(frozen=True)
class _Slice:
    condition: str  # SQL over ``tickets``; "" for every ticket
    counted_by: tuple[str, ...] | None = None  # department keys whose counts give its size


def _slices(scope: Scope, f: QueueFilter, p: _Params) -> list[_Slice]:
    """The disjoint slices of ``scope``, narrowed by the department filter."""
    wanted = f.department_id
    if scope.clients is not None:
        mine = f"client_id IN {p.many(scope.clients)}"
        if wanted == "none":
            mine += " AND department_id IS NULL"
        elif wanted is not None:
            mine += f" AND department_id = {p(wanted)}"
        return [_Slice(mine)]
    if scope.everything:
        if wanted is None:
            return [_Slice("", counted_by=())]  # (): every department key
        if wanted == "none":
            return [_Slice("department_id IS NULL", counted_by=(NO_DEPARTMENT,))]
        return [_Slice(f"department_id = {p(wanted)}", counted_by=(wanted,))]
    found = [
        _Slice(f"department_id = {p(d)}", counted_by=(d,))
        for d in scope.departments
        if wanted in (None, d)
    ]
    if scope.messages and wanted in (None, "none"):
        found.append(_Slice("department_id IS NULL", counted_by=(NO_DEPARTMENT,)))
    if scope.assignee_id is not None:
        # Assigned to the caller, outside the slices above (so that none overlap).
        parts = [f"assignee_id = {p(scope.assignee_id)}"]
        outside = f"department_id NOT IN {p.many(scope.departments)}" if scope.departments else ""
        if scope.messages:
            parts.append("department_id IS NOT NULL")
            if outside:
                parts.append(outside)
        elif outside:
            parts.append(f"(department_id IS NULL OR {outside})")
        if wanted == "none":
            parts.append("department_id IS NULL")
        elif wanted is not None:
            parts.append(f"department_id = {p(wanted)}")
        found.append(_Slice(" AND ".join(parts)))
    return found


def _narrowing(f: QueueFilter, p: _Params) -> list[str]:
    conditions: list[str] = []
    if f.assignee_id == "none":
        conditions.append("assignee_id IS NULL")
    elif f.assignee_id is not None:
        conditions.append(f"assignee_id = {p(f.assignee_id)}")
    if f.client_id is not None:
        conditions.append(f"client_id = {p(f.client_id)}")
    if f.number is not None:
        conditions.append(f"number = {p(f.number)}")
    return conditions


def _where(conditions: list[str]) -> str:
    present = [c for c in conditions if c]
    return " WHERE " + " AND ".join(present) if present else ""


@functools.lru_cache(maxsize=512)
def _typed(sql: str) -> TextualSelect:
    """The text of a page, with the result columns typed as in ``tickets`` (UTC times)."""
    return text(sql).columns(*(tickets.c[name] for name in COLUMNS))


@functools.lru_cache(maxsize=512)
def _plain(sql: str) -> TextClause:
    return text(sql)


def page_query(
    scope: Scope, f: QueueFilter, sort: Sort, limit: int, offset: int
) -> tuple[TextualSelect, dict[str, Any]] | None:
    """The page's statement and parameters, or None when the scope holds nothing."""
    p = _Params()
    slices = _slices(scope, f, p)
    if not slices:
        return None
    key, descending = _KEYS[sort]
    order = f"{key} DESC, ticket_id" if descending else f"{key}, ticket_id"
    statuses: tuple[Status | None, ...] = f.status or (
        STATUSES if scope.clients is None else (None,)
    )
    narrowing = _narrowing(f, p)
    columns = ", ".join(COLUMNS)
    window = int(offset + limit)  # literals, see the module's docstring
    parts: list[str] = []
    for piece in slices:
        for status in statuses:
            conditions = [piece.condition, *narrowing]
            if status is not None:
                conditions.append(f"status = {p(status)}")
            parts.append(
                f"SELECT * FROM (SELECT {columns} FROM tickets{_where(conditions)}"
                f" ORDER BY {order} LIMIT {window}) AS s{len(parts)}"
            )
    union = " UNION ALL ".join(parts)
    sql = (
        f"SELECT {columns} FROM ({union}) AS page ORDER BY {order}"
        f" LIMIT {int(limit)} OFFSET {int(offset)}"
    )
    return _typed(sql), p.values


def _count_sources(scope: Scope, f: QueueFilter, p: _Params) -> list[tuple[str, str, str]]:
    """What counts the view: (table, aggregate, WHERE clause) for ``ticket_counts`` (the
    slices only departments and statuses narrow) and for ``tickets`` (the others)."""
    slices = _slices(scope, f, p)
    narrowing = _narrowing(f, p)
    counted: list[str] = []
    everything = False
    counted_rows: list[str] = []
    for piece in slices:
        if piece.counted_by is not None and not narrowing:
            everything = everything or not piece.counted_by
            counted += piece.counted_by
        else:
            counted_rows.append(f"({piece.condition or '1 = 1'})")
    sources: list[tuple[str, str, str]] = []
    if everything or counted:
        conditions = [] if everything else [f"department_id IN {p.many(tuple(counted))}"]
        if f.status:
            conditions.append(f"status IN {p.many(f.status)}")
        sources.append(("ticket_counts", "COALESCE(SUM(count), 0)", _where(conditions)))
    if counted_rows:
        conditions = ["(" + " OR ".join(counted_rows) + ")", *narrowing]
        if f.status:
            conditions.append(f"status IN {p.many(f.status)}")
        sources.append(("tickets", "COUNT(*)", _where(conditions)))
    return sources


async def total(conn: AsyncConnection, scope: Scope, f: QueueFilter) -> int:
    """How many tickets the view holds (``X-Total-Count``), in one statement."""
    p = _Params()
    sources = _count_sources(scope, f, p)
    if not sources:
        return 0
    parts = [f"(SELECT {agg} FROM {table}{where})" for table, agg, where in sources]
    found = (await conn.execute(_plain("SELECT " + " + ".join(parts)), p.values)).scalar()
    return int(found or 0)


async def totals_by_status(
    conn: AsyncConnection, scope: Scope, f: QueueFilter
) -> dict[Status, int]:
    """How many tickets of the view are in each status (each the ``total`` of the view
    narrowed to that status; 0 for a status ``f.status`` leaves out), in one statement:
    a queue page's counts cost one round trip, not one per status."""
    counts: dict[Status, int] = dict.fromkeys(STATUSES, 0)
    statement = totals_statement(scope, f)
    if statement is None:
        return counts
    for status, n in await conn.execute(*statement):
        if status in counts:
            counts[status] += int(n or 0)
    return counts


def totals_statement(scope: Scope, f: QueueFilter) -> tuple[TextClause, dict[str, Any]] | None:
    """``totals_by_status``'s statement and parameters (None when the scope holds nothing):
    each source grouped by status. The assigned tickets' part reads
    ``ix_tickets_assignee_wait`` alone (it carries ``department_id``)."""
    p = _Params()
    sources = _count_sources(scope, f, p)
    if not sources:
        return None
    sql = " UNION ALL ".join(
        f"SELECT status, {agg} AS n FROM {table}{where} GROUP BY status"
        for table, agg, where in sources
    )
    return _plain(sql), p.values


def visible_condition(scope: Scope) -> tuple[str, dict[str, Any]]:
    """SQL over ``tickets`` for everything ``scope`` sees (the union of its slices, as the
    queue reads them) and its parameters; for reads that are not queue pages (search)."""
    p = _Params()
    slices = _slices(scope, QueueFilter(), p)
    if not slices:
        return "1 = 0", {}
    return "(" + " OR ".join(f"({s.condition or '1 = 1'})" for s in slices) + ")", p.values
