"""The departments application layer: load an aggregate, let it decide, append.

Every command of the API goes through ``Departments``. The aggregates write
everything themselves, including ``DepartmentRightsChanged`` (the fact identity
derives its members' access from) on every rights change and on deletion, so
this layer only loads, decides and appends.

Rules it keeps:

* Every change of a department or a schedule is one load-decide-append through
  the kernel's ``decide_and_append``: a concurrent change is decided again on
  fresh state under the kernel's one retry policy.
* A caller that names the version it saw (``expected_version``) is checked in
  the decision, so a retry on fresh state refuses it: 409 ``version_conflict``
  (the change it has not seen is the caller's to look at).
* Creations append at "no stream" (a fresh id, nothing to retry); the defaults
  are created once even when replicas start together.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import select

from services.departments.domain import department as department_module
from services.departments.domain import schedule as schedule_module
from services.departments.domain.defaults import DEFAULT_DEPARTMENTS
from services.departments.domain.department import Department, DepartmentPatch
from services.departments.domain.errors import NotFound
from services.departments.domain.events import LocalizedText, Support, registry
from services.departments.domain.schedule import RawWeekly, Schedule, SchedulePatch
from services.departments.projections import schedules
from shared.access.delegation import Grantor
from shared.application.commands import CommandAnswer, append, check_seen, decide_and_append
from shared.domain.events import SYSTEM, Actor, DomainEvent
from shared.eventstore import ConcurrencyError, EventStore
from shared.readmodel.database import ReadModelDB

log = structlog.get_logger(__name__)

department_stream = department_module.stream_name
schedule_stream = schedule_module.stream_name


@dataclass
class Departments:
    """The departments application service."""

    store: EventStore
    db: ReadModelDB

    # ---------------------------------------------------------------- departments

    async def create_department(
        self,
        actor: Actor,
        name: LocalizedText,
        *,
        schedule_id: str | None = None,
        task_language: str = "en",
        support: Support | None = None,
    ) -> CommandAnswer:
        department_id = str(uuid.uuid4())
        events = Department.create(
            department_id,
            name,
            schedule_id=schedule_id,
            task_language=task_language,
            support=support,
            known_schedules=await self.known_schedules(schedule_id),
        )
        result = await append(
            self.store, registry, department_stream(department_id), events, 0, actor=actor
        )
        assert result is not None  # creating always writes
        return CommandAnswer.of(department_id, result)

    async def change_department(
        self,
        actor: Actor,
        department_id: str,
        patch: DepartmentPatch,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        schedule_id = patch.schedule_id if "schedule_id" in patch.model_fields_set else None
        known = await self.known_schedules(schedule_id)
        return await self._decide_department(
            actor,
            department_id,
            expected_version,
            lambda department: department.change(patch, known),
        )

    async def delete_department(
        self, actor: Actor, department_id: str, expected_version: int | None = None
    ) -> CommandAnswer:
        """Delete it; its ``DepartmentRightsChanged(deleted=True)`` takes members' rights away."""
        return await self._decide_department(
            actor, department_id, expected_version, lambda department: department.delete()
        )

    async def set_right(
        self,
        actor: Actor,
        department_id: str,
        right: str,
        enabled: bool,
        expected_version: int | None = None,
        *,
        by: Grantor,
    ) -> CommandAnswer:
        """Turn a section or function on or off (no event when nothing would change)."""
        return await self._decide_department(
            actor,
            department_id,
            expected_version,
            lambda department: department.set_right(right, enabled, by),
        )

    async def _decide_department(
        self,
        actor: Actor,
        department_id: str,
        expected_version: int | None,
        decide: Callable[[Department], list[DomainEvent]],
    ) -> CommandAnswer:
        stream = department_stream(department_id)

        def checked(department: Department) -> list[DomainEvent]:
            if not department.id:
                raise NotFound(f"department {department_id}")
            check_seen(stream, department, expected_version)
            return decide(department)  # a deleted one: its commands raise NotFound themselves

        return await decide_and_append(
            self.store, registry, stream, Department, checked, answer_id=department_id, actor=actor
        )

    # ---------------------------------------------------------------- schedules

    async def create_schedule(
        self,
        actor: Actor,
        name: str,
        timezone: str,
        weekly: RawWeekly,
        holidays: Sequence[str] = (),
    ) -> CommandAnswer:
        schedule_id = str(uuid.uuid4())
        events = Schedule.create(schedule_id, name, timezone, weekly, holidays)
        result = await append(
            self.store, registry, schedule_stream(schedule_id), events, 0, actor=actor
        )
        assert result is not None
        return CommandAnswer.of(schedule_id, result)

    async def change_schedule(
        self,
        actor: Actor,
        schedule_id: str,
        patch: SchedulePatch,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        stream = schedule_stream(schedule_id)

        def decide(schedule: Schedule) -> list[DomainEvent]:
            if not schedule.exists:
                raise NotFound(f"schedule {schedule_id}")
            check_seen(stream, schedule, expected_version)
            return schedule.change(patch)

        return await decide_and_append(
            self.store, registry, stream, Schedule, decide, answer_id=schedule_id, actor=actor
        )

    async def known_schedules(self, schedule_id: str | None) -> frozenset[str]:
        """The schedule ids a command may name, as far as ``schedule_id`` is concerned.

        From the read model; and from the store for a schedule so new that the
        read model has not applied it yet (a client creating a schedule and
        then a department on it must not get a spurious 422).
        """
        if schedule_id is None:
            return frozenset()
        async with self.db.engine.connect() as conn:
            found = (
                await conn.execute(
                    select(schedules.c.schedule_id).where(schedules.c.schedule_id == schedule_id)
                )
            ).first()
        if found is not None or await self.store.stream_version(schedule_stream(schedule_id)):
            return frozenset({schedule_id})
        return frozenset()

    # ---------------------------------------------------------------- first start

    async def create_defaults(self) -> list[str]:
        """Create Sales and Technical support once, even with replicas starting together.

        Their stream ids are fixed and the append expects "no stream": a
        ``ConcurrencyError`` means another replica (or an earlier start) made
        it. A default deleted later stays deleted: its stream exists.
        Returns the ids this call created.
        """
        created: list[str] = []
        for default in DEFAULT_DEPARTMENTS:
            stream = department_stream(default.department_id)
            if await self.store.stream_version(stream):
                continue
            try:
                await append(self.store, registry, stream, default.events(), 0, actor=SYSTEM)
            except ConcurrencyError:
                continue
            created.append(default.department_id)
            log.info("departments.default_created", department_id=default.department_id)
        return created
