"""A timer: one deadline that fires once, unless moved or cancelled first.

A timer can be scheduled again after it fired or was cancelled (a new staff
reply sets a new auto-close deadline): each schedule fires at most once. An
event that scheduled or cancelled it acts once: handled again (a redelivery
older than the inbox remembers), it changes nothing, so an old fact never sets
back a deadline that already fired or cancels a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.notifier.domain.events import (
    DeadlineExpired,
    TimerCancelled,
    TimerKind,
    TimerScheduled,
)
from shared.domain.aggregate import Aggregate
from shared.domain.events import DomainEvent

TimerStatus = Literal["none", "scheduled", "fired", "cancelled"]


def stream_of(timer_id: str) -> str:
    return f"timer-{timer_id}"


@dataclass(frozen=True)
class Deadline:
    """What to schedule: the kind, when, and what the expiry fact names."""

    kind: TimerKind
    key: str  # what it is about: a ticket, or a notice to one client
    due_at: datetime
    ticket_id: str | None = None
    client_id: str | None = None
    message_id: str | None = None
    department_id: str | None = None
    response_due_at: datetime | None = None

    @property
    def timer_id(self) -> str:
        return f"{self.kind}-{self.key}"


class Timer(Aggregate):
    def __init__(self) -> None:
        super().__init__()
        self.status: TimerStatus = "none"
        self.scheduled: TimerScheduled | None = None
        self.sources: set[str] = set()  # the events that scheduled or cancelled it

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, TimerScheduled):
            self.status, self.scheduled = "scheduled", event
            self.sources.add(event.source_event_id)
        elif isinstance(event, TimerCancelled):
            self.status = "cancelled"
            self.sources.add(event.source_event_id)
        elif isinstance(event, DeadlineExpired):
            self.status = "fired"

    def schedule(self, deadline: Deadline, source_event_id: str) -> list[DomainEvent]:
        """Set the deadline; nothing when it is already set to the same moment, or when
        ``source_event_id`` has acted on this timer before."""
        if source_event_id in self.sources or (
            self.status == "scheduled"
            and self.scheduled is not None
            and self.scheduled.due_at == deadline.due_at
        ):
            return []
        return [
            TimerScheduled(
                timer_id=deadline.timer_id,
                kind=deadline.kind,
                due_at=deadline.due_at,
                ticket_id=deadline.ticket_id,
                client_id=deadline.client_id,
                message_id=deadline.message_id,
                department_id=deadline.department_id,
                response_due_at=deadline.response_due_at,
                source_event_id=source_event_id,
            )
        ]

    def cancel(self, timer_id: str, reason: str, source_event_id: str) -> list[DomainEvent]:
        if self.status != "scheduled" or source_event_id in self.sources:
            return []
        return [TimerCancelled(timer_id=timer_id, reason=reason, source_event_id=source_event_id)]

    def fire(self, now: datetime) -> list[DomainEvent]:
        """The expiry fact, once, when the deadline has passed and nothing cancelled it."""
        s = self.scheduled
        if self.status != "scheduled" or s is None or s.due_at > now:
            return []
        return [
            DeadlineExpired(
                timer_id=s.timer_id,
                kind=s.kind,
                due_at=s.due_at,
                ticket_id=s.ticket_id,
                client_id=s.client_id,
                message_id=s.message_id,
                department_id=s.department_id,
                response_due_at=s.response_due_at,
            )
        ]
