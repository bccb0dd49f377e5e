"""The departments application rules at the service layer: ``Departments`` over the
in-memory store, its directory read model in SQLite. The HTTP contract stays in
``tests/integration/test_departments.py``; the rights rule itself is unit-tested
in ``tests/unit/test_departments_domain.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from services.departments.app.handlers import Departments
from services.departments.domain.defaults import DEFAULT_DEPARTMENTS, SALES, TECHNICAL_SUPPORT
from services.departments.domain.department import DepartmentPatch
from services.departments.domain.events import LocalizedText
from services.departments.projections import departments as department_rows
from services.departments.projections import projections
from shared.access.delegation import Grantor
from shared.domain import rights as catalogue
from shared.domain.aggregate import DomainError, NotFound
from shared.domain.events import SYSTEM, Actor
from shared.eventstore import ConcurrencyError
from tests.service.harness import Harness, running

ADMIN = Actor(id="admin", kind="staff")
FULL = Grantor(id=ADMIN.id, full_access=True)  # the full-access admin hands rights on
WEEKDAYS = {day: [("09:00", "18:00")] for day in ("mon", "tue", "wed", "thu", "fri")}


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(tmp_path, projections()) as harness:
        yield harness


@pytest.fixture
def departments(harness: Harness) -> Departments:
    return Departments(harness.store, harness.db)


async def row(harness: Harness, department_id: str) -> Any:
    await harness.settled()
    async with harness.db.engine.connect() as conn:
        return (
            await conn.execute(
                select(department_rows).where(department_rows.c.department_id == department_id)
            )
        ).first()


async def new_department(departments: Departments) -> str:
    created = await departments.create_department(ADMIN, LocalizedText(en="Billing", ru="Счета"))
    return created.id


async def test_the_defaults_are_created_once_by_instances_starting_together(
    harness: Harness,
) -> None:
    racing = [Departments(harness.store, harness.db) for _ in range(6)]
    created = await asyncio.gather(*(r.create_defaults() for r in racing))
    assert sorted(i for ids in created for i in ids) == sorted(
        d.department_id for d in DEFAULT_DEPARTMENTS
    )
    assert await harness.store.count() == sum(len(d.events()) for d in DEFAULT_DEPARTMENTS)
    assert await racing[0].create_defaults() == []  # a restart adds nothing
    sales, support = (
        await row(harness, SALES.department_id),
        await row(harness, TECHNICAL_SUPPORT.department_id),
    )
    assert (sales.name_en, sales.name_ru, sales.support_enabled) == ("Sales", "Продажи", False)
    assert (support.name_en, support.support_enabled) == ("Technical support", True)
    assert orjson.loads(sales.rights) == []
    # Technical support works its own queue from the start (not other departments').
    assert "tickets.reply" in orjson.loads(support.rights)
    assert "tickets.all_departments" not in orjson.loads(support.rights)


async def test_a_deleted_default_is_not_created_again(
    harness: Harness, departments: Departments
) -> None:
    await departments.create_defaults()
    await departments.delete_department(ADMIN, SALES.department_id)
    assert await departments.create_defaults() == []
    assert (await row(harness, SALES.department_id)).deleted


async def test_rights_toggle_by_section_and_function_and_reach_members_as_one_fact(
    harness: Harness, departments: Departments
) -> None:
    billing = await new_department(departments)
    await departments.set_right(ADMIN, billing, "clients", True, by=FULL)
    turned = await departments.set_right(ADMIN, billing, "clients.delete", False, by=FULL)
    clients_but_delete = {
        f"clients.{f.name}"
        for f in catalogue.SECTIONS["clients"].functions
        if f.name != "delete" and f"clients.{f.name}" not in catalogue.SEPARATE_GRANTS
    }
    shown = await row(harness, billing)
    assert set(orjson.loads(shown.rights)) == clients_but_delete
    assert orjson.loads(shown.enabled) == ["clients"]
    assert orjson.loads(shown.disabled) == ["clients.delete"]
    assert shown.version == turned.version
    # What identity derives members' access from: the effective rights, whole.
    facts = [e for e in await harness.store.read_all() if e.type == "DepartmentRightsChanged"]
    assert set(facts[-1].data["rights"]) == clients_but_delete
    # A right already effective writes nothing and answers where things stand.
    again = await departments.set_right(ADMIN, billing, "clients.view", True, by=FULL)
    assert (again.version, again.position) == (turned.version, 0)
    # The section off: its rights go with it.
    await departments.set_right(ADMIN, billing, "clients", False, by=FULL)
    await departments.set_right(ADMIN, billing, "tickets.view", True, by=FULL)
    assert orjson.loads((await row(harness, billing)).rights) == ["tickets.view"]
    with pytest.raises(DomainError) as unknown:
        await departments.set_right(ADMIN, billing, "no.such.right", True, by=FULL)
    assert unknown.value.field == "right"


async def test_deleting_a_department_takes_its_rights_and_ends_its_commands(
    harness: Harness, departments: Departments
) -> None:
    billing = await new_department(departments)
    await departments.set_right(ADMIN, billing, "tickets.view", True, by=FULL)
    await departments.delete_department(ADMIN, billing)
    last = (await harness.store.read_all())[-1]
    assert last.type == "DepartmentRightsChanged" and last.data["deleted"] is True
    with pytest.raises(NotFound):
        await departments.set_right(ADMIN, billing, "tickets.reply", True, by=FULL)
    with pytest.raises(NotFound):
        await departments.change_department(ADMIN, "never-existed", DepartmentPatch())
    assert (await row(harness, billing)).deleted


async def test_a_change_over_a_version_not_seen_is_refused_and_writes_nothing(
    harness: Harness, departments: Departments
) -> None:
    billing = await new_department(departments)
    renamed = await departments.change_department(
        ADMIN, billing, DepartmentPatch(name=LocalizedText(en="Invoices", ru="Счета")), 1
    )
    assert renamed.version == 2
    head = await harness.store.head_position()
    with pytest.raises(ConcurrencyError):
        await departments.change_department(ADMIN, billing, DepartmentPatch(task_language="ru"), 1)
    assert await harness.store.head_position() == head
    fresh = await departments.change_department(
        ADMIN, billing, DepartmentPatch(task_language="ru"), 2
    )
    assert fresh.version == 3
    shown = await row(harness, billing)
    assert (shown.name_en, shown.task_language) == ("Invoices", "ru")


async def test_changes_without_a_version_seen_all_land_when_written_at_once(
    harness: Harness, departments: Departments
) -> None:
    # Each decided on the version it loaded; the losers decide again on fresh state
    # (the kernel's one retry policy) instead of answering a conflict nobody asked for.
    billing = await new_department(departments)
    sections = ["clients", "tickets", "reports", "notifier"]
    answers = await asyncio.gather(
        *(departments.set_right(ADMIN, billing, s, True, by=FULL) for s in sections)
    )
    # Two events each: the right and the effective rights identity derives from.
    assert sorted(a.version for a in answers) == [3, 5, 7, 9]
    assert sorted(orjson.loads((await row(harness, billing)).enabled)) == sorted(sections)


async def test_a_department_names_only_a_known_schedule_even_a_brand_new_one(
    harness: Harness, departments: Departments
) -> None:
    with pytest.raises(DomainError) as unknown:
        await departments.create_department(
            ADMIN, LocalizedText(en="Night", ru="Ночь"), schedule_id="no-such-schedule"
        )
    assert unknown.value.field == "schedule_id"
    # Created a moment ago (the read model may not have it yet): accepted.
    schedule = await departments.create_schedule(ADMIN, "Office", "Europe/Moscow", WEEKDAYS)
    night = await departments.create_department(
        SYSTEM, LocalizedText(en="Night", ru="Ночь"), schedule_id=schedule.id
    )
    assert (await row(harness, night.id)).schedule_id == schedule.id
    detached = await departments.change_department(
        ADMIN, night.id, DepartmentPatch.model_validate({"schedule_id": None})
    )
    assert detached.version == 2 and (await row(harness, night.id)).schedule_id is None
