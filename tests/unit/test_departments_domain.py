"""The department aggregate: create / change / delete, the rights rule, events that round-trip."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from services.departments.domain import defaults
from services.departments.domain.department import (
    Department,
    DepartmentPatch,
    SupportPatch,
    effective,
    stream_name,
    turn,
)
from services.departments.domain.errors import Conflict, DomainError, NotFound
from services.departments.domain.events import (
    DepartmentChanged,
    DepartmentCreated,
    DepartmentDeleted,
    DepartmentRightDisabled,
    DepartmentRightEnabled,
    LocalizedText,
    ScheduleChanged,
    ScheduleCreated,
    Support,
    WeeklyHours,
    registry,
)
from shared.access.control import DepartmentRightsChanged
from shared.domain import aggregate as shared_domain
from shared.domain import rights as catalogue
from shared.domain.events import Actor, DomainEvent, RecordedEvent

# What the clients section gives: its functions but the separate grants (clients.password).
CLIENTS_FUNCTIONS = catalogue.SECTIONS["clients"].rights - {"clients"}


def created(**overrides: object) -> Department:
    arguments: dict[str, object] = {
        "department_id": "d-1",
        "name": LocalizedText(en="Billing", ru="Биллинг"),
    }
    arguments.update(overrides)
    events = Department.create(**arguments)  # type: ignore[arg-type]
    return Department().applied(events)


def run(department: Department, events: list[DomainEvent]) -> list[DomainEvent]:
    """Apply a command's events, as the application layer does after appending them."""
    department.applied(events)
    return events


def rebuilt(history: list[DomainEvent]) -> Department:
    return Department().applied(history)


def state(department: Department) -> dict[str, object]:
    return {k: v for k, v in vars(department).items() if k != "version"}


# ---------------------------------------------------------------- create


def test_create_writes_one_event_with_every_field() -> None:
    support = Support(
        enabled=True,
        providers=["p-1", "p-2", "p-1"],
        head_id="s-7",
        description="Hosting questions",
        sort=3,
        charge_requests=True,
    )
    events = Department.create(
        "d-1",
        LocalizedText(en="  Billing ", ru="Биллинг"),
        schedule_id="sch-1",
        task_language="ru",
        support=support,
        known_schedules={"sch-1"},
    )
    assert events == [
        DepartmentCreated(
            department_id="d-1",
            name=LocalizedText(en="Billing", ru="Биллинг"),
            schedule_id="sch-1",
            task_language="ru",
            support=support.model_copy(update={"providers": ["p-1", "p-2"]}),
        )
    ]


def test_a_new_department_has_no_rights() -> None:
    department = created()
    assert department.exists and department.rights() == frozenset()
    assert department.support == Support() and department.schedule_id is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"department_id": " "}, "department_id"),
        ({"department_id": "x" * 65}, "department_id"),
        ({"name": LocalizedText(en=" ", ru="Имя")}, "name.en"),
        ({"name": LocalizedText(en="x" * 101)}, "name.en"),
        ({"name": LocalizedText(en="ok", ru="я" * 101)}, "name.ru"),
        ({"task_language": "de"}, "task_language"),
        ({"schedule_id": "sch-unknown"}, "schedule_id"),
        ({"support": Support(providers=["p-1", " "])}, "support.providers.1"),
        ({"support": Support(head_id="")}, "support.head_id"),
        ({"support": Support(description="x" * 4001)}, "support.description"),
        ({"support": Support(sort=10**9)}, "support.sort"),
    ],
)
def test_invalid_input_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(DomainError) as caught:
        created(**overrides)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_errors_are_the_kernels_so_the_api_maps_them() -> None:
    assert DomainError is shared_domain.DomainError
    assert NotFound is shared_domain.NotFound
    assert Conflict is shared_domain.Conflict


# ---------------------------------------------------------------- change


def test_change_writes_only_what_changed() -> None:
    department = created()
    events = department.change(
        DepartmentPatch(name=LocalizedText(en="Billing", ru="Биллинг"), task_language="ru")
    )
    assert events == [
        DepartmentChanged(department_id="d-1", changed=["task_language"], task_language="ru")
    ]


def test_a_change_to_the_same_values_writes_nothing() -> None:
    department = created()
    assert department.change(DepartmentPatch()) == []
    assert department.change(DepartmentPatch(task_language="en", schedule_id=None)) == []
    assert department.change(DepartmentPatch(support=SupportPatch(enabled=False))) == []


def test_a_support_patch_changes_only_the_given_fields_and_carries_the_whole_block() -> None:
    department = created(support=Support(enabled=True, head_id="s-1", sort=5))
    [event] = run(department, department.change(DepartmentPatch(support=SupportPatch(sort=9))))
    assert isinstance(event, DepartmentChanged)
    assert event.changed == ["support"]
    assert event.support == Support(enabled=True, head_id="s-1", sort=9)
    run(department, department.change(DepartmentPatch(support=SupportPatch(head_id=None))))
    assert department.support == Support(enabled=True, head_id=None, sort=9)


def test_schedule_can_be_set_and_detached() -> None:
    department = created()
    with pytest.raises(DomainError) as caught:
        department.change(DepartmentPatch(schedule_id="nope"), known_schedules={"sch-1"})
    assert caught.value.field == "schedule_id"
    run(department, department.change(DepartmentPatch(schedule_id="sch-1"), {"sch-1"}))
    assert department.schedule_id == "sch-1"
    [detach] = run(department, department.change(DepartmentPatch(schedule_id=None)))
    assert isinstance(detach, DepartmentChanged)
    assert detach.changed == ["schedule_id"] and detach.schedule_id is None
    assert department.schedule_id is None


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (DepartmentPatch(name=None), "name"),
        (DepartmentPatch(name=LocalizedText(en="")), "name.en"),
        (DepartmentPatch(task_language=None), "task_language"),
        (DepartmentPatch(task_language="xx"), "task_language"),
        (DepartmentPatch(support=None), "support"),
        (DepartmentPatch(support=SupportPatch(enabled=None)), "support.enabled"),
        (DepartmentPatch(support=SupportPatch(sort=-(10**7))), "support.sort"),
        (DepartmentPatch(support=SupportPatch(providers=[""])), "support.providers.0"),
    ],
)
def test_invalid_changes_name_the_field(patch: DepartmentPatch, field: str) -> None:
    with pytest.raises(DomainError) as caught:
        created().change(patch)
    assert caught.value.field == field


def test_change_events_set_exactly_the_fields_they_list() -> None:
    with pytest.raises(ValueError):
        DepartmentChanged(department_id="d", changed=["name"])
    with pytest.raises(ValueError):
        DepartmentChanged(department_id="d", changed=[], task_language="ru")
    assert DepartmentChanged(department_id="d", changed=["schedule_id"]).schedule_id is None


# ---------------------------------------------------------------- delete


def test_delete_tells_identity_the_rights_are_gone() -> None:
    department = created()
    run(department, department.set_right("clients", True))
    events = run(department, department.delete())
    assert events == [
        DepartmentDeleted(department_id="d-1"),
        DepartmentRightsChanged(department_id="d-1", rights=[], deleted=True),
    ]
    assert department.deleted and not department.exists


def test_a_deleted_department_refuses_commands() -> None:
    department = created()
    run(department, department.delete())
    with pytest.raises(NotFound):
        department.delete()
    with pytest.raises(NotFound):
        department.change(DepartmentPatch(task_language="ru"))
    with pytest.raises(NotFound):
        department.set_right("clients", True)


def test_commands_on_a_department_that_never_existed_are_not_found() -> None:
    with pytest.raises(NotFound):
        Department().set_right("clients", True)
    with pytest.raises(NotFound):
        Department().change(DepartmentPatch())


# ---------------------------------------------------------------- rights


def test_enabling_a_section_gives_all_its_functions() -> None:
    department = created()
    events = run(department, department.set_right("clients", True))
    assert events[0] == DepartmentRightEnabled(department_id="d-1", right="clients")
    assert events[1] == DepartmentRightsChanged(
        department_id="d-1", rights=sorted({"clients"} | CLIENTS_FUNCTIONS)
    )
    assert department.rights() == catalogue.expand(["clients"])
    assert "clients.create" in department.rights()


def test_enabling_an_enabled_right_writes_nothing() -> None:
    department = created()
    run(department, department.set_right("clients", True))
    assert department.set_right("clients", True) == []
    run(department, department.set_right("tickets.reply", True))
    assert department.set_right("tickets.reply", True) == []
    # Already effective through its enabled section:
    assert department.set_right("clients.view", True) == []


def test_disabling_what_is_not_on_writes_nothing() -> None:
    department = created()
    assert department.set_right("clients", False) == []
    assert department.set_right("clients.delete", False) == []


def test_unknown_rights_are_refused_naming_the_field() -> None:
    for right in ("nope", "clients.nope", "", "clients."):
        with pytest.raises(DomainError) as caught:
            created().set_right(right, True)
        assert caught.value.field == "right"


def test_a_section_with_one_function_disabled() -> None:
    department = created()
    run(department, department.set_right("clients", True))
    events = run(department, department.set_right("clients.delete", False))
    assert events[0] == DepartmentRightDisabled(department_id="d-1", right="clients.delete")
    expected = CLIENTS_FUNCTIONS - {"clients.delete"}
    assert department.rights() == expected
    assert events[1] == DepartmentRightsChanged(department_id="d-1", rights=sorted(expected))
    # The section name means the whole section, so it is not effective now.
    assert "clients" not in department.rights()
    assert department.enabled == {"clients"} and department.disabled == {"clients.delete"}

    assert department.set_right("clients.delete", False) == []  # idempotent
    run(department, department.set_right("clients.delete", True))
    assert department.rights() == catalogue.expand(["clients"])
    assert department.disabled == frozenset()


def test_turning_a_section_on_again_forgets_its_exceptions() -> None:
    department = created()
    for right, on in [("clients", True), ("clients.delete", False), ("clients.notes", False)]:
        run(department, department.set_right(right, on))
    run(department, department.set_right("clients", True))
    assert department.rights() == catalogue.expand(["clients"])


def test_turning_a_section_off_removes_functions_enabled_one_by_one() -> None:
    department = created()
    run(department, department.set_right("clients.view", True))
    run(department, department.set_right("clients.notes", True))
    run(department, department.set_right("tickets.view", True))
    assert department.rights() == {"clients.view", "clients.notes", "tickets.view"}
    run(department, department.set_right("clients", False))
    assert department.rights() == {"tickets.view"}


def test_functions_enabled_one_by_one_do_not_make_the_section() -> None:
    department = created()
    for right in sorted(CLIENTS_FUNCTIONS):
        run(department, department.set_right(right, True))
    assert department.rights() == CLIENTS_FUNCTIONS
    run(department, department.set_right("clients.view", False))
    assert department.rights() == CLIENTS_FUNCTIONS - {"clients.view"}


def test_disabling_every_function_of_an_enabled_section_turns_it_off() -> None:
    department = created()
    run(department, department.set_right("finance", True))
    for right in ("finance.payments", "finance.expenses", "finance.invoices"):
        run(department, department.set_right(right, False))
    assert department.rights() == frozenset()
    assert department.enabled == frozenset() and department.disabled == frozenset()
    assert department.set_right("finance", False) == []


def test_a_command_writes_events_exactly_when_the_effective_rights_change() -> None:
    """Every pair of (right, on) from a few states: no event iff the rights stay the same."""
    rights = ["clients", "clients.view", "clients.delete", "tickets", "tickets.reply"]
    starts = [[], [("clients", True)], [("clients", True), ("clients.view", False)]]
    for start in starts:
        for right in rights:
            for on in (True, False):
                department = created()
                for r, o in start:
                    run(department, department.set_right(r, o))
                before = department.rights()
                events = run(department, department.set_right(right, on))
                assert (events == []) == (department.rights() == before), (start, right, on)
                has = right in department.rights() or (
                    catalogue.is_section(right)
                    and catalogue.SECTIONS[right].rights - {right} <= department.rights()
                )
                assert has is on, (start, right, on)


def test_turn_and_effective_are_usable_without_the_aggregate() -> None:
    enabled, disabled = turn(frozenset(), frozenset(), "clients", True)
    enabled, disabled = turn(enabled, disabled, "clients.penalty", False)
    assert effective(enabled, disabled) == CLIENTS_FUNCTIONS - {"clients.penalty"}
    # A right that has left the catalogue, found in an old event, changes nothing.
    assert turn(enabled, disabled, "gone.right", True) == (enabled, disabled)


# ---------------------------------------------------------------- rebuild, streams


def test_rebuilding_from_the_events_gives_the_same_state() -> None:
    department = created(support=Support(enabled=True))
    history: list[DomainEvent] = list(
        Department.create(
            "d-1",
            LocalizedText(en="Billing", ru="Биллинг"),
            support=Support(enabled=True),
        )
    )
    commands: list[Callable[[], list[DomainEvent]]] = [
        lambda: department.set_right("clients", True),
        lambda: department.set_right("clients.delete", False),
        lambda: department.set_right("tickets.view", True),
        lambda: department.change(
            DepartmentPatch(name=LocalizedText(en="Accounts"), schedule_id="sch-1"), {"sch-1"}
        ),
        lambda: department.change(DepartmentPatch(support=SupportPatch(sort=2))),
    ]
    for command in commands:
        history += run(department, command())
    again = rebuilt(history)
    assert state(again) == state(department)
    assert again.version == department.version == len(history)
    assert again.name == LocalizedText(en="Accounts")
    assert again.rights() == (CLIENTS_FUNCTIONS - {"clients.delete"}) | {"tickets.view"}


def test_stream_names() -> None:
    assert stream_name("d-1") == "department-d-1"


def test_defaults_have_fixed_ids_and_the_expected_names() -> None:
    # Literal ids: every replica and every release must agree on them forever.
    assert defaults.SALES.department_id == "d0cf2a1a-b9c3-54d8-87a9-9187ad7275c8"
    assert defaults.TECHNICAL_SUPPORT.department_id == "b0a168e7-7cbf-55cb-8cd5-34d27a991a62"
    sales = rebuilt(defaults.SALES.events())
    support = rebuilt(defaults.TECHNICAL_SUPPORT.events())
    assert sales.name == LocalizedText(en="Sales", ru="Продажи")
    assert support.name == LocalizedText(en="Technical support", ru="Техническая поддержка")
    assert support.support.enabled and not sales.support.enabled
    # Technical support works its own queue from the start (issue 17); Sales has nothing.
    assert sales.rights() == frozenset()
    assert "tickets.view" in support.rights() and "tickets.all_departments" not in support.rights()
    assert [d.department_id for d in defaults.DEFAULT_DEPARTMENTS] == [
        sales.id,
        support.id,
    ]
    # The same events each time, so concurrent replicas write the same thing.
    assert defaults.SALES.events() == defaults.SALES.events()


# ---------------------------------------------------------------- JSON round trip


def recorded(event: DomainEvent) -> RecordedEvent:
    """Through the store's JSON, as a consumer of departments.events sees it."""
    new = registry.encode(event, actor=Actor(id="s-1", kind="staff"))
    stored = RecordedEvent(
        position=1,
        stream="department-d-1",
        stream_version=1,
        event_id=new.event_id,
        type=new.type,
        schema_version=new.schema_version,
        occurred_at=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        actor=new.actor,
        data=new.data,
    )
    return RecordedEvent.from_json(stored.to_json())


EVERY_EVENT: list[DomainEvent] = [
    DepartmentCreated(
        department_id="d-1",
        name=LocalizedText(en="Billing", ru="Биллинг ✓"),
        schedule_id="sch-1",
        task_language="ru",
        support=Support(
            enabled=True,
            providers=["p-1"],
            head_id="s-1",
            description="d",
            sort=-2,
            charge_requests=True,
        ),
    ),
    DepartmentChanged(department_id="d-1", changed=["schedule_id"], schedule_id=None),
    DepartmentChanged(
        department_id="d-1",
        changed=["name", "task_language", "support"],
        name=LocalizedText(en="B"),
        task_language="en",
        support=Support(),
    ),
    DepartmentDeleted(department_id="d-1"),
    DepartmentRightEnabled(department_id="d-1", right="clients"),
    DepartmentRightDisabled(department_id="d-1", right="clients.delete"),
    DepartmentRightsChanged(department_id="d-1", rights=["clients.view"], deleted=False),
    ScheduleCreated(
        schedule_id="sch-1",
        name="Office",
        timezone="Europe/Moscow",
        weekly=WeeklyHours(mon=[("09:00", "13:00"), ("14:00", "18:00")], sun=[("00:00", "24:00")]),
        holidays=[date(2026, 12, 31), date(2027, 1, 1)],
    ),
    ScheduleChanged(schedule_id="sch-1", changed=["holidays"], holidays=[]),
    ScheduleChanged(
        schedule_id="sch-1",
        changed=["name", "timezone", "weekly"],
        name="Night",
        timezone="UTC",
        weekly=WeeklyHours(tue=[("22:00", "24:00")]),
    ),
]


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: type(e).__name__)
def test_every_event_round_trips_through_json(event: DomainEvent) -> None:
    again = recorded(event)
    assert again.type == event.event_type
    assert registry.decode(again) == event


def test_every_registered_event_is_covered_by_the_round_trip() -> None:
    assert set(registry.models()) == {type(e).event_type for e in EVERY_EVENT}
    assert all(name[0].isupper() and name.endswith(("ed", "Changed")) for name in registry.models())


def test_holidays_and_time_ranges_are_plain_json() -> None:
    schedule = next(e for e in EVERY_EVENT if isinstance(e, ScheduleCreated))
    data = registry.encode(schedule).data
    assert data["holidays"] == ["2026-12-31", "2027-01-01"]
    assert data["weekly"]["mon"] == [["09:00", "13:00"], ["14:00", "18:00"]]
