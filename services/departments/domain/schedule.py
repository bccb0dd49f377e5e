"""Work schedules: the ``Schedule`` aggregate (business hours, time zone, holidays).

The business-time arithmetic (``expected_response_at``, ``business_time_between``,
``next_opening``, ``is_open``) and the validation of hours live in the kernel,
``shared.domain.business_hours``, so the support center and the notifier count
working time exactly as departments do; they are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Self

from pydantic import BaseModel, ConfigDict

from services.departments.domain.errors import DomainError, NotFound
from services.departments.domain.events import ScheduleChanged, ScheduleCreated, ScheduleField
from shared.domain.aggregate import Aggregate
from shared.domain.business_hours import (
    MAX_HOLIDAYS,
    MAX_RESPONSE_HOURS,
    RawWeekly,
    ScheduleHours,
    WeeklyHours,
    business_time_between,
    check_holidays,
    check_timezone,
    check_weekly,
    expected_response_at,
    is_open,
    next_opening,
)
from shared.domain.events import DomainEvent

# The business-hours names are re-exported: the kernel owns them (see the docstring).
__all__ = [
    "MAX_HOLIDAYS",
    "MAX_ID",
    "MAX_NAME",
    "MAX_RESPONSE_HOURS",
    "RawWeekly",
    "Schedule",
    "ScheduleHours",
    "SchedulePatch",
    "WeeklyHours",
    "business_time_between",
    "check_holidays",
    "check_timezone",
    "check_weekly",
    "expected_response_at",
    "is_open",
    "next_opening",
    "stream_name",
]

MAX_ID = 64
MAX_NAME = 100


def stream_name(schedule_id: str) -> str:
    return f"schedule-{schedule_id}"


# ---------------------------------------------------------------- validation


def _check_name(name: str) -> str:
    clean = name.strip()
    if not clean:
        raise DomainError("name", "a name is required")
    if len(clean) > MAX_NAME:
        raise DomainError("name", f"at most {MAX_NAME} characters")
    return clean


# ---------------------------------------------------------------- the aggregate


class SchedulePatch(BaseModel):
    """A change of a schedule: only the fields given (``model_fields_set``) change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    timezone: str | None = None
    weekly: dict[str, list[list[str]]] | None = None
    holidays: list[str] | None = None


class Schedule(Aggregate):
    """A work schedule, rebuilt from its stream ``schedule-<id>``."""

    def __init__(self) -> None:
        super().__init__()
        self.id = ""
        self.name = ""
        self.timezone = "UTC"
        self.weekly = WeeklyHours()
        self.holidays: list[date] = []

    @property
    def exists(self) -> bool:
        return bool(self.id)

    @staticmethod
    def create(
        schedule_id: str,
        name: str,
        timezone: str,
        weekly: RawWeekly,
        holidays: Sequence[str | date] = (),
    ) -> list[DomainEvent]:
        if not (0 < len(schedule_id.strip()) <= MAX_ID):
            raise DomainError("schedule_id", f"1-{MAX_ID} characters")
        clean_name = _check_name(name)
        check_timezone(timezone)
        return [
            ScheduleCreated(
                schedule_id=schedule_id,
                name=clean_name,
                timezone=timezone,
                weekly=check_weekly(weekly),
                holidays=check_holidays(holidays),
            )
        ]

    def change(self, patch: SchedulePatch) -> list[DomainEvent]:
        """Change the fields given; values equal to the current ones write nothing."""
        if not self.exists:
            raise NotFound("schedule")
        given = patch.model_fields_set
        for field in given:
            if getattr(patch, field) is None:
                raise DomainError(field, "cannot be null")
        name = _check_name(patch.name) if patch.name is not None else self.name
        if patch.timezone is not None:
            check_timezone(patch.timezone)
        timezone = patch.timezone if patch.timezone is not None else self.timezone
        weekly = check_weekly(patch.weekly) if patch.weekly is not None else self.weekly
        holidays = check_holidays(patch.holidays) if patch.holidays is not None else self.holidays
        changed: list[ScheduleField] = []
        if name != self.name:
            changed.append("name")
        if timezone != self.timezone:
            changed.append("timezone")
        if weekly != self.weekly:
            changed.append("weekly")
        if holidays != self.holidays:
            changed.append("holidays")
        if not changed:
            return []
        return [
            ScheduleChanged(
                schedule_id=self.id,
                changed=changed,
                name=name if "name" in changed else None,
                timezone=timezone if "timezone" in changed else None,
                weekly=weekly if "weekly" in changed else None,
                holidays=holidays if "holidays" in changed else None,
            )
        ]

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, ScheduleCreated):
            self.id = event.schedule_id
            self.name = event.name
            self.timezone = event.timezone
            self.weekly = event.weekly
            self.holidays = list(event.holidays)
        elif isinstance(event, ScheduleChanged):
            for name in event.changed:
                setattr(self, name, getattr(event, name))

    @classmethod
    def rebuilt(cls, events: Iterable[DomainEvent]) -> Self:
        return cls().applied(events)
