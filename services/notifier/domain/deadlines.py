"""Which facts set, move and cancel which deadlines. Pure: no I/O.

Every deadline's moment is in the facts already (``due_at``, ``close_due_at``,
``rating_due_at`` on tickets, the violation's deadline on an abuse notice);
the notifier only adds the response-time warning, ``lead`` of business time
before a ticket's expected response runs out, by its department's schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.notifier.domain.timer import Deadline
from shared.domain.business_hours import ScheduleHours, business_time_between


@dataclass(frozen=True)
class Cancel:
    timer_id: str
    reason: str


@dataclass(frozen=True)
class TicketFacts:
    """What the notifier remembers of a ticket (from ``tickets.events``)."""

    ticket_id: str
    client_id: str
    department_id: str | None = None
    assignee_id: str | None = None
    message_ref: str | None = None  # the abuse notice / message a thread was opened by
    number: int | None = None  # the short number (``#1042``), when its opening said it


Plan = list[Deadline | Cancel]
WarnAt = Callable[[str | None, datetime], datetime]


def warning_at(schedule: ScheduleHours | None, due_at: datetime, lead: timedelta) -> datetime:
    """The moment ``lead`` of business time before ``due_at`` (plain time without a schedule).

    The latest moment from which at least ``lead`` of business time is left:
    found by halving, since business time left only grows going back.
    """
    if schedule is None or lead <= timedelta(0):
        return due_at - lead
    if business_time_between(schedule, due_at - lead, due_at) >= lead:
        return due_at - lead  # open the whole while: no need to search
    earliest, latest = due_at - max(lead * 4, timedelta(days=60)), due_at - lead
    if business_time_between(schedule, earliest, due_at) < lead:
        return earliest  # hardly ever open: warn early rather than never
    while latest - earliest > timedelta(seconds=1):
        middle = earliest + (latest - earliest) / 2
        if business_time_between(schedule, middle, due_at) >= lead:
            earliest = middle
        else:
            latest = middle
    whole = latest.replace(microsecond=0)  # a whole second, if it still leaves ``lead``
    return whole if business_time_between(schedule, whole, due_at) >= lead else earliest


def parse_datetime(value: Any) -> datetime:
    """An instant from a fact's JSON (ISO 8601), aware in UTC."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _when(value: Any) -> datetime | None:
    return parse_datetime(value) if value else None


def response_warning(
    ticket_id: str, department_id: str | None, due: datetime | None, warn_at: WarnAt
) -> Plan:
    if due is None:
        return [Cancel(f"response_time-{ticket_id}", "no response expected")]
    return [
        Deadline(
            "response_time",
            ticket_id,
            warn_at(department_id, due),
            ticket_id=ticket_id,
            department_id=department_id,
            response_due_at=due,
        )
    ]


def plan(
    event_type: str, data: Mapping[str, Any], ticket: TicketFacts | None, warn_at: WarnAt
) -> Plan:
    """The deadlines a fact sets or cancels."""
    if event_type == "ClientMessaged":
        violation = data.get("violation")
        if not violation:
            return []
        client_id, message_id = str(data["client_id"]), str(data["message_id"])
        return [
            Deadline(
                "abuse_notice",
                f"{message_id}-{client_id}",
                parse_datetime(violation["deadline"]),
                client_id=client_id,
                message_id=message_id,
            )
        ]
    ticket_id = str(data.get("ticket_id", ""))
    if not ticket_id:
        return []
    department = ticket.department_id if ticket else None
    if event_type == "TicketOpened":
        return response_warning(
            ticket_id, data.get("department_id"), _when(data.get("due_at")), warn_at
        )
    if event_type == "TicketMessagePosted":
        if data.get("internal"):
            return []
        if data.get("author_kind") == "client":
            steps: Plan = [Cancel(f"ticket_auto_close-{ticket_id}", "the client answered")]
            if ticket and ticket.message_ref:
                notice = f"abuse_notice-{ticket.message_ref}-{ticket.client_id}"
                steps.append(Cancel(notice, "the client answered"))
            due = _when(data.get("due_at"))
            if due is not None:
                steps += response_warning(ticket_id, department, due, warn_at)
            return steps
        if data.get("author_kind") == "staff":
            steps = [Cancel(f"response_time-{ticket_id}", "staff replied")]
            close_due = _when(data.get("close_due_at"))
            if close_due is not None:
                steps.append(
                    Deadline("ticket_auto_close", ticket_id, close_due, ticket_id=ticket_id)
                )
            rating_due = _when(data.get("rating_due_at"))
            if rating_due is not None:
                message_id = str(data["message_id"])
                steps.append(
                    Deadline(
                        "rating_request",
                        f"{ticket_id}-{message_id}",
                        rating_due,
                        ticket_id=ticket_id,
                        message_id=message_id,
                    )
                )
            return steps
        return []
    if event_type == "TicketTransferred":
        due = _when(data.get("due_at"))
        if due is None:
            return []
        return response_warning(ticket_id, data.get("to_department_id") or department, due, warn_at)
    if event_type == "TicketReopened":
        due = _when(data.get("due_at"))
        return [] if due is None else response_warning(ticket_id, department, due, warn_at)
    if event_type == "TicketClosed":
        steps = [
            Cancel(f"ticket_auto_close-{ticket_id}", "closed"),
            Cancel(f"response_time-{ticket_id}", "closed"),
        ]
        rating_due = _when(data.get("rating_due_at"))
        if rating_due is not None:
            steps.append(
                Deadline("rating_request", f"{ticket_id}-ticket", rating_due, ticket_id=ticket_id)
            )
        return steps
    return []
