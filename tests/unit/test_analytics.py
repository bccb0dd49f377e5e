"""Pure parts of the analysts' tools: rows upcast and opened, visibility rules at a moment."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from analytics import history
from analytics.export import Selection, export_row
from services.clients.domain.company import Company
from services.clients.domain.company_events import CompanyCreated, CompanyMemberAdded
from services.identity.domain.events import LocalizedName, StaffDisabled
from services.identity.domain.staff import Staff
from services.tickets.domain.ticket import Ticket
from shared.access.control import IpPolicy
from shared.domain.events import SYSTEM, DomainEvent, EventRegistry, RecordedEvent
from shared.privacy.shredding import seal_value
from shared.projections.builtin import EventTypeCounts
from shared.projections.replay import READ_COST, LogToRebuild, plan, plan_all

AT = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
registry = EventRegistry()


@registry.register
class NoteWritten(DomainEvent):
    """v2 renamed ``text`` to ``body``; ``body`` is the client's personal data."""

    event_type = "NoteWritten"
    schema_version = 2
    personal_fields: ClassVar[tuple[str, ...]] = ("body",)
    subject_field: ClassVar[str] = "client_id"
    client_id: str
    body: str | None


@registry.upcaster("NoteWritten", 1)
def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data["body"] = data.pop("text")
    return data


def stored(data: dict[str, Any], version: int = 1, type_: str = "NoteWritten") -> RecordedEvent:
    return RecordedEvent(
        7, "note-1", 1, uuid.uuid4(), type_, version, AT, None, None, SYSTEM, data
    )  # fmt: skip


def test_rows_are_opened_with_live_keys_then_upcast() -> None:
    key = bytes(32)
    event = stored({"client_id": "c1", "text": seal_value(key, "c1", "hello")})
    row = export_row("clients", event, registry, {"c1": key})
    assert row["data"] == {"client_id": "c1", "body": "hello"}
    assert (row["schema_version"], row["stored_schema_version"]) == (2, 1)
    erased = export_row("clients", event, registry, {})
    assert erased["data"] == {"client_id": "c1", "body": None}
    unknown = export_row("clients", stored({"x": 1}, 3, "Gone"), registry, {})
    assert unknown["data"] == {"x": 1} and unknown["schema_version"] == 3


def test_selection_is_half_open_on_occurred_at() -> None:
    event = stored({"client_id": "c1", "text": "t"})
    assert Selection(since=AT).wants(event)
    assert not Selection(until=AT).wants(event)
    assert not Selection(types=frozenset({"Other"})).wants(event)


def member(staff_id: str, rights: dict[str, list[str]], **kw: Any) -> history.StaffRights:
    defaults: dict[str, Any] = {
        "login": staff_id, "exists": True, "disabled": False, "full_access": False,
        "departments": (), "ip_policy": IpPolicy(),
    }  # fmt: skip
    return history.StaffRights(staff_id=staff_id, rights=rights, **{**defaults, **kw})


def test_a_thread_without_department_is_seen_by_messagers_and_the_assignee() -> None:
    thread = Ticket(id="t1", client_id="c1", department_id=None, assignee_id="sam")
    staff = [
        member("mia", {"tickets.view": ["individual"], "clients.message": ["individual"]}),
        member("sam", {"tickets.view": ["individual"]}),
        member("ned", {"tickets.view": ["department:d1"]}, departments=("d1",)),
        member("off", {"tickets.view": ["individual"], "clients.message": ["individual"]},
               disabled=True),
        member("nov", {"clients.message": ["individual"]}),  # no tickets.view
    ]  # fmt: skip
    answer = history.ticket_viewers(thread, staff, {})
    assert [(v.id, v.why) for v in answer.viewers] == [
        ("mia", "messages queue (clients.message)"),
        ("sam", "assignee"),
        ("c1", "the ticket's client"),
    ]


def test_a_company_member_who_is_not_manager_sees_only_own_tickets() -> None:
    company = Company().applied(
        [
            CompanyCreated(company_id="k", name="K"),
            CompanyMemberAdded(company_id="k", client_id="c1"),
            CompanyMemberAdded(company_id="k", client_id="c2"),
        ]
    )
    ticket = Ticket(id="t1", client_id="c1", department_id="d1")
    answer = history.ticket_viewers(ticket, [], {"k": company}, erased_clients=())
    assert [v.id for v in answer.viewers] == ["c1"] and answer.company_id == "k"


def test_a_disabled_member_keeps_rights_on_paper_but_is_flagged() -> None:
    events: list[DomainEvent] = [
        *Staff.add("s1", "lee", LocalizedName(en="Lee"), None, None, [], set(), full_access=True),
        StaffDisabled(staff_id="s1"),
    ]
    (lee,) = history.everyone(events, [])
    assert lee.disabled and lee.full_access and lee.rights["tickets.view"] == ["full_access"]


class _ReadModel(EventTypeCounts):
    def __init__(
        self,
        name: str,
        cost: float,
        partitionable: bool = False,
        handles: frozenset[str] | None = None,
    ) -> None:
        self.name, self.rebuild_cost = name, cost
        self.partitionable, self.handles = partitionable, handles


def test_a_rebuild_plan_balances_read_models_across_processes() -> None:
    """The costliest read model first, each into the cheapest group; SQLite gets one group."""
    models = [_ReadModel("counts", 1), _ReadModel("queue", 25), _ReadModel("reports", 20),
              _ReadModel("catalog", 0.2), _ReadModel("links", 6)]  # fmt: skip
    pg = "postgresql://localhost/tickets"
    jobs = plan("tickets", pg, pg, models, groups=2, events=1_000)
    # queue | reports; links and counts each to the lighter group; catalog breaks the tie.
    assert [job.projections for job in jobs] == [
        ("queue", "counts", "catalog"),
        ("reports", "links"),
    ]
    assert [job.work for job in jobs] == [1_000 * (READ_COST + 26.2), 1_000 * (READ_COST + 26)]
    assert [len(job.projections) for job in plan("tickets", pg, pg, models, groups=9)] == [1] * 5
    (one,) = plan("tickets", pg, "sqlite:///var/tickets-read.db", models, groups=4)
    assert set(one.projections) == {m.name for m in models}
    with pytest.raises(ValueError, match="groups"):
        plan("tickets", pg, pg, models, groups=0)


def test_only_a_big_share_of_the_work_is_split() -> None:
    """Each extra group reads the log again: a log with a small share keeps one."""
    pg = "postgresql://localhost/x"
    models = [_ReadModel("counts", 1), _ReadModel("queue", 25), _ReadModel("reports", 20)]
    big = LogToRebuild("tickets", pg, pg, models, events=800_000)
    small = LogToRebuild(
        "clients", pg, pg, [_ReadModel("counts", 1), _ReadModel("dir", 38)], 180_000
    )
    jobs = plan_all([big, small], workers=2)
    assert [(job.service, len(job.projections)) for job in jobs] == [
        ("tickets", 1),
        ("tickets", 2),
        ("clients", 2),
    ]
    assert len(plan_all([big, small], workers=1)) == 2  # one job per service
    assert len(plan_all([small], workers=2)) == 2  # alone, it is the whole work


def test_a_big_log_is_split_by_stream_for_its_partitionable_read_models() -> None:
    """Each part of the log feeds every partitionable read model; the others get one
    job, which reads only the types they handle when every one of them says."""
    pg = "postgresql://localhost/x"
    catalog_types = frozenset({"CategoryCreated"})
    models = [
        _ReadModel("counts", 1, partitionable=True),
        _ReadModel("queue", 25, partitionable=True),
        _ReadModel("reports", 20, partitionable=True),
        _ReadModel("catalog", 0.2, handles=catalog_types),
    ]
    big = LogToRebuild("tickets", pg, pg, models, events=800_000)
    small = LogToRebuild("clients", pg, pg, [_ReadModel("dir", 38)], 180_000)
    jobs = plan_all([big, small], workers=2)
    assert [(j.service, j.projections, j.types) for j in jobs] == [
        ("tickets", ("catalog",), catalog_types),
        ("clients", ("dir",), None),
        ("tickets", ("counts", "queue", "reports"), None),
        ("tickets", ("counts", "queue", "reports"), None),
    ]
    catalog, directory, first, second = jobs
    assert catalog.work == 800_000 * 0.2  # no reading cost counted: a few rows read
    # The parts cover every bucket once, and are sized so that both processes end
    # together: the directory and a part on one, the catalog and the other part on
    # the other (run biggest first, each on the first free process).
    assert first.partition is not None and second.partition is not None
    assert (first.partition[0], first.partition[1]) == (0, second.partition[0])
    assert second.partition[1] == 1000
    assert first.work + second.work == pytest.approx(800_000 * (READ_COST + 46))
    assert directory.work + first.work == pytest.approx(catalog.work + second.work)
    # A read model that does not say what it handles makes the rest read everything.
    models.append(_ReadModel("links", 6))
    planned = plan_all([LogToRebuild("tickets", pg, pg, models, 800_000)], workers=2)
    [rest] = [j for j in planned if j.partition is None]
    assert (rest.projections, rest.types) == (("catalog", "links"), None)
    # SQLite, or one process: no split.
    sqlite = LogToRebuild("tickets", pg, "sqlite:///var/t.db", models, events=800_000)
    assert [j.partition for j in plan_all([sqlite], workers=2)] == [None]
    assert [j.partition for j in plan_all([big], workers=1)] == [None]
