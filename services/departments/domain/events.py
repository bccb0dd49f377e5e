"""Events of the departments context, published on ``departments.events``.

Streams: ``department-<id>`` and ``schedule-<id>``.

Changes are one event per command carrying only what changed
(``DepartmentChanged``, ``ScheduleChanged``): ``changed`` lists the fields the
event sets, every other optional field is None and means "unchanged". The list
is needed because None is itself a value for some fields (``schedule_id``:
no schedule), so "absent" and "set to None" must be told apart. Nested blocks
(``support``, ``weekly``) are carried whole, as they are after the change.

``DepartmentRightsChanged`` (from ``shared.access.control``) is registered here too: the
department aggregate writes it next to every rights change and on deletion,
with the department's effective rights, because identity derives its members'
access from it without knowing the rule that makes effective rights.
"""

from __future__ import annotations

from datetime import date
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, model_validator

from shared.access import control as access
from shared.domain.business_hours import (
    WeeklyHours as WeeklyHours,  # the kernel owns business hours
)
from shared.domain.events import DomainEvent, EventRegistry, check_changed
from shared.domain.events import LocalizedText as LocalizedText  # the kernel owns it

registry = EventRegistry()
registry.register(access.DepartmentRightsChanged)

DepartmentField = Literal["name", "schedule_id", "task_language", "support"]
ScheduleField = Literal["name", "timezone", "weekly", "holidays"]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Support(_Value):
    """How a department shows in the support center."""

    enabled: bool = False
    providers: list[str] = []  # ids of the providers (projects) it serves; empty: all
    head_id: str | None = None  # a staff id
    description: str = ""
    sort: int = 0
    charge_requests: bool = False
    # The address clients write to by mail (the mail gateway opens tickets here from it;
    # mails to the client carry it as Reply-To). None: the department takes no mail.
    inbound_email: str | None = None


# ---------------------------------------------------------------- departments


@registry.register
class DepartmentCreated(DomainEvent):
    event_type = "DepartmentCreated"
    department_id: str
    name: LocalizedText
    schedule_id: str | None
    task_language: str
    support: Support


@registry.register
class DepartmentChanged(DomainEvent):
    """Only the fields in ``changed`` are set; the others are None and mean unchanged."""

    event_type = "DepartmentChanged"
    department_id: str
    changed: list[DepartmentField]
    name: LocalizedText | None = None
    schedule_id: str | None = None
    task_language: str | None = None
    support: Support | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_changed(self, "department_id", list(self.changed), nullable={"schedule_id"})
        return self


@registry.register
class DepartmentDeleted(DomainEvent):
    event_type = "DepartmentDeleted"
    department_id: str


@registry.register
class DepartmentRightEnabled(DomainEvent):
    """A section or a function turned on (see ``department.py`` for the rule)."""

    event_type = "DepartmentRightEnabled"
    department_id: str
    right: str


@registry.register
class DepartmentRightDisabled(DomainEvent):
    """A section or a function turned off (see ``department.py`` for the rule)."""

    event_type = "DepartmentRightDisabled"
    department_id: str
    right: str


# ---------------------------------------------------------------- schedules


@registry.register
class ScheduleCreated(DomainEvent):
    event_type = "ScheduleCreated"
    schedule_id: str
    name: str
    timezone: str  # IANA name, e.g. "Europe/Moscow"
    weekly: WeeklyHours
    holidays: list[date]  # whole local dates, sorted


@registry.register
class ScheduleChanged(DomainEvent):
    """Only the fields in ``changed`` are set; the others are None and mean unchanged."""

    event_type = "ScheduleChanged"
    schedule_id: str
    changed: list[ScheduleField]
    name: str | None = None
    timezone: str | None = None
    weekly: WeeklyHours | None = None
    holidays: list[date] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_changed(self, "schedule_id", list(self.changed), nullable=set())
        return self
