"""Read models of the departments context, fed from its own store.

* ``DepartmentDirectory``: one row per department (deleted ones too, flagged),
  with its support block, schedule, the enabled / disabled sets and the
  effective rights they make; and one row per work schedule.

The rows are rebuilt from the events alone (``python -m shared.cli rebuild
departments``); the rights rule is the domain's (``turn``, ``effective``),
so the read model and the aggregate can never disagree about it.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.departments.domain.department import effective, turn
from services.departments.domain.events import (
    DepartmentChanged,
    DepartmentCreated,
    DepartmentDeleted,
    DepartmentRightDisabled,
    DepartmentRightEnabled,
    ScheduleChanged,
    ScheduleCreated,
    registry,
)
from shared.access.control import DepartmentRightsChanged
from shared.domain.events import RecordedEvent
from shared.projections.runner import Projection

metadata = MetaData()

departments = Table(
    "departments",
    metadata,
    Column("department_id", String(64), primary_key=True),
    Column("name_en", String(200), nullable=False),
    Column("name_ru", String(200), nullable=False),
    Column("schedule_id", String(64), nullable=True),
    Column("task_language", String(8), nullable=False),
    Column("support", Text, nullable=False),  # the support block as JSON
    # Copies out of ``support`` so lists can filter and sort in SQL.
    Column("support_enabled", Boolean, nullable=False),
    Column("sort", Integer, nullable=False),
    Column("enabled", Text, nullable=False),  # JSON lists, sorted
    Column("disabled", Text, nullable=False),
    Column("rights", Text, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
)

schedules = Table(
    "schedules",
    metadata,
    Column("schedule_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("weekly", Text, nullable=False),  # {"mon": [["09:00", "18:00"]], ...} as JSON
    Column("holidays", Text, nullable=False),  # ["2026-12-31", ...] as JSON
    Column("version", Integer, nullable=False),
)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class DepartmentDirectory(Projection):
    """Departments and schedules, as the API lists and shows them."""

    name = "department_directory"
    metadata = metadata

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        if event.type not in registry.models():
            return
        payload = registry.decode(event)
        version = event.stream_version
        if isinstance(payload, DepartmentCreated):
            support = payload.support
            await conn.execute(
                departments.insert().values(
                    department_id=payload.department_id,
                    name_en=payload.name.en,
                    name_ru=payload.name.ru,
                    schedule_id=payload.schedule_id,
                    task_language=payload.task_language,
                    support=_json(support.model_dump(mode="json")),
                    support_enabled=support.enabled,
                    sort=support.sort,
                    enabled="[]",
                    disabled="[]",
                    rights="[]",
                    deleted=False,
                    version=version,
                )
            )
        elif isinstance(payload, DepartmentChanged):
            values: dict[str, Any] = {"version": version}
            for name in payload.changed:
                if name == "name":
                    assert payload.name is not None
                    values.update(name_en=payload.name.en, name_ru=payload.name.ru)
                elif name == "support":
                    assert payload.support is not None
                    values.update(
                        support=_json(payload.support.model_dump(mode="json")),
                        support_enabled=payload.support.enabled,
                        sort=payload.support.sort,
                    )
                else:
                    values[name] = getattr(payload, name)
            await self._update_department(conn, payload.department_id, values)
        elif isinstance(payload, DepartmentDeleted):
            await self._update_department(
                conn, payload.department_id, {"deleted": True, "version": version}
            )
        elif isinstance(payload, DepartmentRightEnabled | DepartmentRightDisabled):
            await self._turn(
                conn,
                payload.department_id,
                payload.right,
                isinstance(payload, DepartmentRightEnabled),
                version,
            )
        elif isinstance(payload, ScheduleCreated):
            await conn.execute(
                schedules.insert().values(
                    schedule_id=payload.schedule_id,
                    name=payload.name,
                    timezone=payload.timezone,
                    weekly=_json(payload.weekly.model_dump(mode="json")),
                    holidays=_json([d.isoformat() for d in payload.holidays]),
                    version=version,
                )
            )
        elif isinstance(payload, ScheduleChanged):
            changes: dict[str, Any] = {"version": version}
            if payload.name is not None:
                changes["name"] = payload.name
            if payload.timezone is not None:
                changes["timezone"] = payload.timezone
            if payload.weekly is not None:
                changes["weekly"] = _json(payload.weekly.model_dump(mode="json"))
            if payload.holidays is not None:
                changes["holidays"] = _json([d.isoformat() for d in payload.holidays])
            await conn.execute(
                schedules.update()
                .where(schedules.c.schedule_id == payload.schedule_id)
                .values(**changes)
            )
        elif isinstance(payload, DepartmentRightsChanged):
            # Derived from the rights events above, which already set the rights
            # (and from a deletion): only the stream version moves.
            await self._update_department(conn, payload.department_id, {"version": version})

    async def _update_department(
        self, conn: AsyncConnection, department_id: str, values: dict[str, Any]
    ) -> None:
        await conn.execute(
            departments.update()
            .where(departments.c.department_id == department_id)
            .values(**values)
        )

    async def _turn(
        self, conn: AsyncConnection, department_id: str, right: str, on: bool, version: int
    ) -> None:
        row = (
            await conn.execute(
                select(departments.c.enabled, departments.c.disabled).where(
                    departments.c.department_id == department_id
                )
            )
        ).first()
        if row is None:
            return
        enabled, disabled = turn(
            frozenset(orjson.loads(row.enabled)), frozenset(orjson.loads(row.disabled)), right, on
        )
        await self._update_department(
            conn,
            department_id,
            {
                "enabled": _json(sorted(enabled)),
                "disabled": _json(sorted(disabled)),
                "rights": _json(sorted(effective(enabled, disabled))),
                "version": version,
            },
        )


def projections() -> list[Projection]:
    """The read models this service keeps (besides the kernel's event counts)."""
    return [DepartmentDirectory()]
