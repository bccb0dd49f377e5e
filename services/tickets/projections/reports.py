"""Support reports (``ticket_reports``): response times, tickets answered, ratings.

Built from the ticket events alone, so ``python -m shared.cli rebuild tickets``
(or ``--projection ticket_reports``) replays them into the same rows. Nothing
of the client's personal data is kept: texts are never opened here.

What counts (times are wall-clock seconds between the events' ``occurred_at``;
the departments' business hours are not applied: they live in another
context's facts, and a rebuild would count old tickets by today's schedules):

* **first response** – from ``TicketOpened`` to the first staff reply the
  client sees (internal notes do not count), for tickets that begin waiting
  for staff (opened by the client, or by staff on the client's behalf;
  threads that staff began with a message to a client have none). Closed
  before any reply: no first response.
* **response** – each client message (the opening one included) to the next
  staff reply the client sees; several messages before one reply give one
  figure each. Messages still unanswered when the ticket closes are dropped.
* **answered** – a ticket is answered in a month by a staff member (and by the
  department it is in at that moment) when they post a reply the client sees
  in it that month; ``replies`` counts those replies.
* **ratings** – a rating of a reply (``kind`` ``message``) is credited to that
  reply's author and to the department the ticket was in when it was posted;
  a rating of the whole ticket (``ticket``) to the ticket's department and its
  last staff replier at the moment of rating (nobody: department only). A new
  rating of the same reply or ticket replaces the earlier one, which leaves
  the figures of its month.

Every figure belongs to the month (UTC, ``YYYY-MM``) of the event that ends
it: the staff reply, or the rating. Department ``""`` is the messages queue
(threads with no department); the API shows it as ``null``.

Tables:

* ``report_ticket_state`` – per ticket, what the next events need (department,
  waiting client messages, authors of staff replies, current ratings), as JSON;
* ``report_response_times`` – per (month, department, staff member): sums and
  counts in milliseconds, so any range or grouping adds up exactly;
* ``report_answered`` – one row per (ticket, month, department, staff member)
  with its number of replies; reports count distinct tickets over it;
* ``report_ratings`` – per (month, department, staff member, kind, score): a count.

The aggregation itself (``TicketTrack.step`` and the ``*_report`` functions)
is pure; ``TicketReports`` stores what it decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import orjson
from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    distinct,
    func,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tickets.domain.events import (
    TicketClosed,
    TicketEvent,
    TicketMessagePosted,
    TicketOpened,
    TicketRated,
    TicketTransferred,
    registry,
)
from shared.domain.events import Actor, RecordedEvent
from shared.privacy import shredding
from shared.projections.runner import Projection
from shared.readmodel.database import add_to_rows, among, insert_rows, update_rows

TRACKED = frozenset(
    model.event_type
    for model in (TicketOpened, TicketMessagePosted, TicketTransferred, TicketClosed, TicketRated)
)
"""The ticket events that change a ``TicketTrack`` (the others are not even decoded)."""

NO_DEPARTMENT = ""
"""Department key of the messages queue (a thread nobody moved to a department)."""
NOBODY = ""
"""Staff key of a ticket rating when no staff member replied."""

RatingKind = Literal["message", "ticket"]
SCORES = (1, 2, 3, 4, 5)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)

metadata = MetaData()

ticket_state = Table(
    "report_ticket_state",
    metadata,
    Column("ticket_id", String(64), primary_key=True),
    Column("state", Text, nullable=False),
)

response_times = Table(
    "report_response_times",
    metadata,
    Column("month", String(7), primary_key=True),
    Column("department_id", String(64), primary_key=True),
    Column("staff_id", String(64), primary_key=True),
    Column("first_count", BigInteger, nullable=False),
    Column("first_ms", BigInteger, nullable=False),
    Column("response_count", BigInteger, nullable=False),
    Column("response_ms", BigInteger, nullable=False),
)

answered = Table(
    "report_answered",
    metadata,
    Column("ticket_id", String(64), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("department_id", String(64), primary_key=True),
    Column("staff_id", String(64), primary_key=True),
    Column("replies", Integer, nullable=False),
    Index("ix_report_answered_department", "month", "department_id"),
    Index("ix_report_answered_staff", "month", "staff_id"),
)

ratings = Table(
    "report_ratings",
    metadata,
    Column("month", String(7), primary_key=True),
    Column("department_id", String(64), primary_key=True),
    Column("staff_id", String(64), primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("score", Integer, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

SUMMED = (answered, ratings, response_times)  # in the order a batch adds to them


def month_of(at: datetime) -> str:
    """The UTC month of a moment, ``YYYY-MM``."""
    utc = at if at.tzinfo is UTC else at.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"  # strftime costs several times as much


def epoch_ms(at: datetime) -> int:
    """Milliseconds since 1970 (whole, rounded down), exact for any aware moment."""
    utc = at if at.tzinfo is UTC else at.astimezone(UTC)  # as read: UTC already
    return (utc - _EPOCH) // _MILLISECOND


# ---------------------------------------------------------------- what one event changes


@dataclass(frozen=True)
class ResponseDelta:
    """Figures a staff reply ends: add to ``report_response_times``."""

    month: str
    department_id: str
    staff_id: str
    first_count: int
    first_ms: int
    response_count: int
    response_ms: int


@dataclass(frozen=True)
class AnsweredDelta:
    """One reply the client sees: the ticket is answered that month by that staff member."""

    month: str
    department_id: str
    staff_id: str
    ticket_id: str


@dataclass(frozen=True)
class RatingDelta:
    """One rating more (``change`` +1) or one less (-1, replaced) in a bucket."""

    month: str
    department_id: str
    staff_id: str
    kind: RatingKind
    score: int
    change: int


Delta = ResponseDelta | AnsweredDelta | RatingDelta


@dataclass(frozen=True)
class Credit:
    """Where a current rating is counted (so that a new one can take it back)."""

    month: str
    department_id: str
    staff_id: str
    kind: RatingKind
    score: int


@dataclass
class TicketTrack:
    """What the reports remember of one ticket between its events."""

    ticket_id: str
    department_id: str | None = None
    first_from_ms: int | None = None  # opened, no staff reply yet
    pending: int = 0  # client messages waiting for the next staff reply
    pending_ms: int = 0  # the sum of their epoch milliseconds
    last_staff_id: str | None = None
    # staff message id -> (its author, the department the ticket was in then)
    authors: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    # "" (the whole ticket) or a message id -> where its current rating is counted
    credits: dict[str, Credit] = field(default_factory=dict)

    @classmethod
    def opened(cls, event: TicketOpened, at: datetime, actor: Actor) -> TicketTrack:
        track = cls(ticket_id=event.ticket_id, department_id=event.department_id)
        if event.status == "open":  # waits for staff: its first message is the client's
            track.first_from_ms = epoch_ms(at)
            track.pending, track.pending_ms = 1, epoch_ms(at)
        elif event.origin == "client_message" and actor.kind == "staff":
            # Staff began the thread: its first message is theirs, and may be rated.
            track.authors[event.message_id] = (actor.id, event.department_id)
            track.last_staff_id = actor.id
        return track

    def step(self, event: TicketEvent, at: datetime) -> list[Delta]:
        """Change this track for one later event of the ticket; the figures it ends."""
        # By exact class (event models are final): ``isinstance`` on a pydantic model
        # goes through ABCMeta's Python-level check, and a rebuild steps every event.
        if type(event) is TicketMessagePosted and not event.internal:
            if event.author_kind == "client":
                self.pending += 1
                self.pending_ms += epoch_ms(at)
            elif event.author_kind == "staff":
                return self._staff_reply(event, at)
        elif type(event) is TicketTransferred:
            self.department_id = event.to_department_id
        elif type(event) is TicketClosed:
            self.first_from_ms = None
            self.pending = self.pending_ms = 0
        elif type(event) is TicketRated:
            return self._rated(event, at)
        return []

    def _staff_reply(self, event: TicketMessagePosted, at: datetime) -> list[Delta]:
        month, now = month_of(at), epoch_ms(at)
        department = _department_key(self.department_id)
        deltas: list[Delta] = []
        first_count, first_ms = 0, 0
        if self.first_from_ms is not None:
            first_count, first_ms = 1, now - self.first_from_ms
            self.first_from_ms = None
        if first_count or self.pending:
            deltas.append(
                ResponseDelta(
                    month=month,
                    department_id=department,
                    staff_id=event.author_id,
                    first_count=first_count,
                    first_ms=first_ms,
                    response_count=self.pending,
                    response_ms=self.pending * now - self.pending_ms,
                )
            )
        self.pending = self.pending_ms = 0
        deltas.append(AnsweredDelta(month, department, event.author_id, self.ticket_id))
        self.authors[event.message_id] = (event.author_id, self.department_id)
        self.last_staff_id = event.author_id
        return deltas

    def _rated(self, event: TicketRated, at: datetime) -> list[Delta]:
        target = event.message_id or ""
        kind: RatingKind
        if event.message_id is not None:
            kind = "message"
            staff_id, department_id = self.authors.get(event.message_id, (NOBODY, None))
        else:
            kind = "ticket"
            staff_id, department_id = self.last_staff_id or NOBODY, self.department_id
        new = Credit(month_of(at), _department_key(department_id), staff_id, kind, event.score)
        old = self.credits.get(target)
        self.credits[target] = new
        if old == new:
            return []
        deltas: list[Delta] = []
        if old is not None:
            deltas.append(
                RatingDelta(old.month, old.department_id, old.staff_id, old.kind, old.score, -1)
            )
        deltas.append(RatingDelta(new.month, new.department_id, new.staff_id, kind, new.score, 1))
        return deltas

    # ---------------------------------------------------------------- storage

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "department_id": self.department_id,
                "first_from_ms": self.first_from_ms,
                "pending": self.pending,
                "pending_ms": self.pending_ms,
                "last_staff_id": self.last_staff_id,
                "authors": self.authors,
                "credits": {
                    target: [c.month, c.department_id, c.staff_id, c.kind, c.score]
                    for target, c in self.credits.items()
                },
            }
        ).decode()

    @classmethod
    def from_json(cls, ticket_id: str, raw: str) -> TicketTrack:
        data = orjson.loads(raw)
        return cls(
            ticket_id=ticket_id,
            department_id=data["department_id"],
            first_from_ms=data["first_from_ms"],
            pending=data["pending"],
            pending_ms=data["pending_ms"],
            last_staff_id=data["last_staff_id"],
            authors={m: (a[0], a[1]) for m, a in data["authors"].items()},
            credits={t: Credit(*c) for t, c in data["credits"].items()},
        )


def _department_key(department_id: str | None) -> str:
    return NO_DEPARTMENT if department_id is None else department_id


# ---------------------------------------------------------------- the projection


class TicketReports(Projection):
    """Stores what ``TicketTrack`` decides for each ticket event."""

    name = "ticket_reports"
    rebuild_cost = 16
    partitionable = True  # a track per ticket, and sums
    metadata = metadata

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        await self.apply_all(conn, [event])

    async def apply_all(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        """A batch in a few statements: the tracks it touches read at once, decided in
        order in memory, written back once each, and the report rows added per key."""
        tracked = [e for e in events if e.type in TRACKED]
        if not tracked:
            return
        # Texts are never opened here (no key is read): the queue's decoding of the
        # same page is reused when there is one (shredding.decode_unopened).
        steps: list[tuple[str, TicketEvent, RecordedEvent]] = []
        for event in tracked:
            payload = cast(TicketEvent, shredding.decode_unopened(registry, event))
            steps.append((event.stream.removeprefix("ticket-"), payload, event))
        opened = {t for t, payload, _ in steps if type(payload) is TicketOpened}
        stored = {t for t, _, _ in steps} - opened
        tracks: dict[str, TicketTrack] = {}
        if stored:
            for row in await conn.execute(
                select(ticket_state.c.ticket_id, ticket_state.c.state).where(
                    among(conn, ticket_state.c.ticket_id, stored)
                )
            ):
                tracks[row.ticket_id] = TicketTrack.from_json(row.ticket_id, row.state)
        changed: set[str] = set()
        # Per table: the key's values (in the table's key order) -> amounts to add.
        sums: dict[Table, dict[tuple[Any, ...], dict[str, int]]] = {t: {} for t in SUMMED}
        for ticket_id, payload, event in steps:
            if type(payload) is TicketOpened:  # the first event of its stream, once
                tracks[ticket_id] = TicketTrack.opened(payload, event.occurred_at, event.actor)
                continue
            track = tracks.get(ticket_id)
            if track is None:
                continue  # cannot happen in one stream's order; never fail the projection
            changed.add(ticket_id)
            for delta in track.step(payload, event.occurred_at):
                table, key, amounts = _row_of(delta)
                total = sums[table].setdefault(key, dict.fromkeys(amounts, 0))
                for name, amount in amounts.items():
                    total[name] += amount
        await insert_rows(
            conn, ticket_state, [{"ticket_id": t, "state": tracks[t].to_json()} for t in opened]
        )
        await update_rows(
            conn,
            ticket_state,
            "ticket_id",
            [{"ticket_id": t, "state": tracks[t].to_json()} for t in sorted(changed - opened)],
        )
        # Tables in one order and rows in key order: processes rebuilding parts of the
        # log side by side (shared.projections.replay) then lock shared rows in the same order.
        # (A key's values have the same types in every row of its table.)
        for table, added in sums.items():
            names = [c.name for c in table.primary_key.columns]
            rows = [
                {**dict(zip(names, key, strict=True)), **amounts}
                for key, amounts in sorted(added.items())
            ]
            await add_to_rows(conn, table, rows)


def _row_of(delta: Delta) -> tuple[Table, tuple[Any, ...], dict[str, int]]:
    """The report table, row key (its values in the table's primary key order) and
    amounts to add for one delta."""
    if isinstance(delta, ResponseDelta):
        amounts = {
            "first_count": delta.first_count,
            "first_ms": delta.first_ms,
            "response_count": delta.response_count,
            "response_ms": delta.response_ms,
        }
        return response_times, (delta.month, delta.department_id, delta.staff_id), amounts
    if isinstance(delta, AnsweredDelta):
        key: tuple[Any, ...] = (delta.ticket_id, delta.month, delta.department_id, delta.staff_id)
        return answered, key, {"replies": 1}
    key = (delta.month, delta.department_id, delta.staff_id, delta.kind, delta.score)
    return ratings, key, {"count": delta.change}


@dataclass(frozen=True)
class ReportFilter:
    """What a report covers: months ``YYYY-MM`` (inclusive), one department, one staff member.

    ``department_id`` ``""`` is the messages queue; None: every department.
    """

    month_from: str | None = None
    month_to: str | None = None
    department_id: str | None = None
    staff_id: str | None = None

    def where(self, table: Table) -> ColumnElement[bool]:
        conditions: list[ColumnElement[bool]] = []
        if self.month_from is not None:
            conditions.append(table.c.month >= self.month_from)
        if self.month_to is not None:
            conditions.append(table.c.month <= self.month_to)
        if self.department_id is not None:
            conditions.append(table.c.department_id == self.department_id)
        if self.staff_id is not None:
            conditions.append(table.c.staff_id == self.staff_id)
        return and_(true(), *conditions)


def _shown(department_id: str) -> str | None:
    return None if department_id == NO_DEPARTMENT else department_id


# ---------------------------------------------------------------- reading: response times


class Timing(BaseModel):
    """How many figures, and their mean in seconds (None without any)."""

    count: int
    average_seconds: float | None


class ResponseTimes(BaseModel):
    first_response: Timing
    response: Timing


class DepartmentResponseTimes(BaseModel):
    department_id: str | None
    first_response: Timing
    response: Timing


class StaffResponseTimes(BaseModel):
    staff_id: str
    first_response: Timing
    response: Timing


class ResponseTimesReport(BaseModel):
    """Wall-clock seconds (business hours not applied); see the module docstring."""

    total: ResponseTimes
    departments: list[DepartmentResponseTimes]
    staff: list[StaffResponseTimes]


@dataclass(frozen=True)
class ResponseRow:
    department_id: str
    staff_id: str
    first_count: int
    first_ms: int
    response_count: int
    response_ms: int


@dataclass
class _Sums:
    first_count: int = 0
    first_ms: int = 0
    response_count: int = 0
    response_ms: int = 0

    def add(self, row: ResponseRow) -> None:
        self.first_count += row.first_count
        self.first_ms += row.first_ms
        self.response_count += row.response_count
        self.response_ms += row.response_ms

    def times(self) -> ResponseTimes:
        return ResponseTimes(
            first_response=_timing(self.first_count, self.first_ms),
            response=_timing(self.response_count, self.response_ms),
        )


def _timing(count: int, total_ms: int) -> Timing:
    return Timing(count=count, average_seconds=round(total_ms / count / 1000, 3) if count else None)


def response_times_report(rows: Iterable[ResponseRow]) -> ResponseTimesReport:
    """Sum the rows of a range per department and per staff member."""
    total = _Sums()
    by_department: dict[str, _Sums] = {}
    by_staff: dict[str, _Sums] = {}
    for row in rows:
        total.add(row)
        by_department.setdefault(row.department_id, _Sums()).add(row)
        by_staff.setdefault(row.staff_id, _Sums()).add(row)
    return ResponseTimesReport(
        total=total.times(),
        departments=[
            DepartmentResponseTimes(department_id=_shown(d), **sums.times().model_dump())
            for d, sums in sorted(by_department.items())
        ],
        staff=[
            StaffResponseTimes(staff_id=s, **sums.times().model_dump())
            for s, sums in sorted(by_staff.items())
        ],
    )


async def read_response_times(conn: AsyncConnection, f: ReportFilter) -> ResponseTimesReport:
    rows = await conn.execute(
        select(
            response_times.c.department_id,
            response_times.c.staff_id,
            response_times.c.first_count,
            response_times.c.first_ms,
            response_times.c.response_count,
            response_times.c.response_ms,
        ).where(f.where(response_times))
    )
    return response_times_report(ResponseRow(*row) for row in rows)


# ---------------------------------------------------------------- reading: answered


class DepartmentAnswered(BaseModel):
    department_id: str | None
    tickets: int
    replies: int


class StaffAnswered(BaseModel):
    staff_id: str
    tickets: int
    replies: int


class AnsweredMonth(BaseModel):
    month: str
    tickets: int  # distinct tickets
    replies: int
    departments: list[DepartmentAnswered]
    staff: list[StaffAnswered]


class AnsweredReport(BaseModel):
    months: list[AnsweredMonth]


@dataclass(frozen=True)
class AnsweredRow:
    """Distinct tickets and replies of one month, for one key (a department, a staff
    member, or "" for the month's total)."""

    month: str
    key: str
    tickets: int
    replies: int


def answered_report(
    totals: Iterable[AnsweredRow],
    departments: Iterable[AnsweredRow],
    staff: Iterable[AnsweredRow],
) -> AnsweredReport:
    """The three groupings of the same marks, month by month."""
    months: dict[str, AnsweredMonth] = {
        t.month: AnsweredMonth(
            month=t.month, tickets=t.tickets, replies=t.replies, departments=[], staff=[]
        )
        for t in totals
    }
    for d in sorted(departments, key=lambda r: (r.month, r.key)):
        months[d.month].departments.append(
            DepartmentAnswered(department_id=_shown(d.key), tickets=d.tickets, replies=d.replies)
        )
    for s in sorted(staff, key=lambda r: (r.month, r.key)):
        months[s.month].staff.append(
            StaffAnswered(staff_id=s.key, tickets=s.tickets, replies=s.replies)
        )
    return AnsweredReport(months=[months[m] for m in sorted(months)])


async def read_answered(conn: AsyncConnection, f: ReportFilter) -> AnsweredReport:
    tickets = func.count(distinct(answered.c.ticket_id))
    replies = func.sum(answered.c.replies)
    where = f.where(answered)

    async def grouped(*by: Any) -> list[AnsweredRow]:
        query = select(answered.c.month, *by, tickets, replies).where(where)
        rows = await conn.execute(query.group_by(answered.c.month, *by))
        if by:
            return [AnsweredRow(r[0], r[1], int(r[2]), int(r[3])) for r in rows]
        return [AnsweredRow(r[0], "", int(r[1]), int(r[2])) for r in rows]

    return answered_report(
        await grouped(), await grouped(answered.c.department_id), await grouped(answered.c.staff_id)
    )


# ---------------------------------------------------------------- reading: ratings


class RatingStats(BaseModel):
    """How many ratings, their mean, and how many of each score ("1" … "5")."""

    count: int
    average: float | None
    scores: dict[str, int]


class Ratings(BaseModel):
    all: RatingStats
    message: RatingStats  # ratings of replies
    ticket: RatingStats  # ratings of whole tickets


class DepartmentRatings(BaseModel):
    department_id: str | None
    all: RatingStats
    message: RatingStats
    ticket: RatingStats


class StaffRatings(BaseModel):
    staff_id: str
    all: RatingStats
    message: RatingStats
    ticket: RatingStats


class RatingsReport(BaseModel):
    total: Ratings
    departments: list[DepartmentRatings]
    staff: list[StaffRatings]


@dataclass(frozen=True)
class RatingRow:
    department_id: str
    staff_id: str
    kind: RatingKind
    score: int
    count: int


@dataclass
class _Counts:
    by_kind: dict[str, dict[int, int]] = field(
        default_factory=lambda: {kind: dict.fromkeys(SCORES, 0) for kind in ("message", "ticket")}
    )

    def add(self, row: RatingRow) -> None:
        self.by_kind[row.kind][row.score] += row.count

    @property
    def empty(self) -> bool:
        return not any(any(c.values()) for c in self.by_kind.values())

    def ratings(self) -> dict[str, RatingStats]:
        both = {s: self.by_kind["message"][s] + self.by_kind["ticket"][s] for s in SCORES}
        return {
            "all": _stats(both),
            "message": _stats(self.by_kind["message"]),
            "ticket": _stats(self.by_kind["ticket"]),
        }


def _stats(counts: dict[int, int]) -> RatingStats:
    count = sum(counts.values())
    average = round(sum(s * c for s, c in counts.items()) / count, 3) if count else None
    return RatingStats(count=count, average=average, scores={str(s): counts[s] for s in SCORES})


def ratings_report(rows: Iterable[RatingRow]) -> RatingsReport:
    """Sum the rows of a range per department and per staff member (ratings of a
    whole ticket no staff member replied to count for the department only)."""
    total = _Counts()
    by_department: dict[str, _Counts] = {}
    by_staff: dict[str, _Counts] = {}
    for row in rows:
        if row.score not in SCORES or row.kind not in ("message", "ticket"):
            continue
        total.add(row)
        by_department.setdefault(row.department_id, _Counts()).add(row)
        if row.staff_id != NOBODY:
            by_staff.setdefault(row.staff_id, _Counts()).add(row)
    return RatingsReport(
        total=Ratings(**total.ratings()),
        departments=[
            DepartmentRatings(department_id=_shown(d), **counts.ratings())
            for d, counts in sorted(by_department.items())
            if not counts.empty
        ],
        staff=[
            StaffRatings(staff_id=s, **counts.ratings())
            for s, counts in sorted(by_staff.items())
            if not counts.empty
        ],
    )


async def read_ratings(conn: AsyncConnection, f: ReportFilter) -> RatingsReport:
    rows = await conn.execute(
        select(
            ratings.c.department_id,
            ratings.c.staff_id,
            ratings.c.kind,
            ratings.c.score,
            ratings.c.count,
        ).where(f.where(ratings))
    )
    return ratings_report(RatingRow(*row) for row in rows)
