"""Read models of the notifier context, fed from its own store.

``NotifierViews`` keeps three tables in one pass over the store:

* ``notifier_deliveries`` – the delivery log: one row per notice (recipient and
  channel) with its status, attempts and the event it came from; what the
  postman sends from. Address, subject and body are opened with the subject's
  key; an erased client's rows lose them.
* ``notifier_timers`` – every deadline, scheduled, fired or cancelled.
* ``notifier_subscriptions`` – staff subscriptions.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.domain.events import (
    DeadlineExpired,
    DeliveryAttemptFailed,
    NoticeFailed,
    NoticeQueued,
    NoticeSent,
    SubscriptionChanged,
    TimerCancelled,
    TimerScheduled,
    registry,
)
from shared.domain.events import RecordedEvent
from shared.privacy import shredding
from shared.projections.runner import Projection
from shared.readmodel.database import UtcDateTime, upsert

metadata = MetaData()

deliveries = Table(
    "notifier_deliveries",
    metadata,
    Column("notice_id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("channel", String(8), nullable=False, index=True),
    Column("to", String(320), nullable=True, index=True),
    Column("subject", Text, nullable=True),
    Column("body", Text, nullable=True),
    Column("language", String(8), nullable=False),
    Column("recipient_kind", String(16), nullable=False),
    Column("recipient_id", String(64), nullable=False),
    Column("subject_id", String(64), nullable=False, index=True),
    Column("event_id", String(36), nullable=False, index=True),
    Column("event_type", String(64), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("next_attempt_at", UtcDateTime(), nullable=True, index=True),
    Column("queued_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=True),
    Column("position", BigInteger, nullable=False, index=True),
    Column("version", Integer, nullable=False),
    # A mail of a conversation: its thread, Reply-To, and files (sealed JSON, opened here).
    Column("thread_id", String(100), nullable=True),
    Column("reply_to", String(320), nullable=True),
    Column("files", Text, nullable=True),
    Column("rating_of", String(140), nullable=True),
    Column("reset_of", String(36), nullable=True),
)

timers = Table(
    "notifier_timers",
    metadata,
    Column("timer_id", String(200), primary_key=True),
    Column("kind", String(32), nullable=False, index=True),
    Column("due_at", UtcDateTime(), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("ticket_id", String(64), nullable=True, index=True),
    Column("client_id", String(64), nullable=True, index=True),
    Column("message_id", String(64), nullable=True),
    Column("department_id", String(64), nullable=True),
    Column("source_event_id", String(36), nullable=False),
    Column("scheduled_at", UtcDateTime(), nullable=False),
    Column("fired_at", UtcDateTime(), nullable=True),
    Column("cancel_reason", String(200), nullable=True),
    Column("fired_event_id", String(36), nullable=True),
)

subscriptions = Table(
    "notifier_subscriptions",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("language", String(8), nullable=False),
    Column("notices", Text, nullable=False),  # JSON: notice -> [channel]
    Column("version", Integer, nullable=False),
)

_NOTICE_EVENTS = frozenset({"NoticeQueued", "DeliveryAttemptFailed", "NoticeSent", "NoticeFailed"})


class NotifierViews(Projection):
    name = "notifier"
    metadata = metadata
    reads = (shredding.metadata,)

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        await self.apply_all(conn, [event])

    async def apply_all(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        subjects = {str(e.data.get("subject_id")) for e in events if e.type == "NoticeQueued"}
        keys = await shredding.keys_in(conn, subjects)
        for event in events:
            if event.type not in registry.models():
                continue
            payload = shredding.open_event(registry, event, keys)
            await self._apply(conn, event, payload)

    async def _apply(self, conn: AsyncConnection, event: RecordedEvent, payload: Any) -> None:
        at = event.occurred_at
        if isinstance(payload, NoticeQueued):
            await conn.execute(
                deliveries.insert().values(
                    notice_id=payload.notice_id,
                    kind=payload.kind,
                    channel=payload.channel,
                    to=payload.to,
                    subject=payload.subject,
                    body=payload.body,
                    language=payload.language,
                    recipient_kind=payload.recipient_kind,
                    recipient_id=payload.recipient_id,
                    subject_id=payload.subject_id,
                    event_id=payload.event_id,
                    event_type=payload.event_type_name,
                    status="queued",
                    attempts=0,
                    next_attempt_at=at,
                    queued_at=at,
                    position=event.position,
                    version=event.stream_version,
                    thread_id=payload.thread_id,
                    reply_to=payload.reply_to,
                    files=payload.files,
                    rating_of=payload.rating_of,
                    reset_of=payload.reset_of,
                )
            )
        elif isinstance(payload, DeliveryAttemptFailed):
            await self._delivery(
                conn, event, payload.notice_id,
                status="retrying", attempts=payload.attempt, last_error=payload.error,
                next_attempt_at=payload.retry_at,
            )  # fmt: skip
        elif isinstance(payload, NoticeSent):
            await self._delivery(
                conn, event, payload.notice_id,
                status="sent", attempts=payload.attempt, sent_at=payload.sent_at,
                next_attempt_at=None,
            )  # fmt: skip
        elif isinstance(payload, NoticeFailed):
            await self._delivery(
                conn, event, payload.notice_id,
                status="failed", attempts=payload.attempt, last_error=payload.error,
                next_attempt_at=None,
            )  # fmt: skip
        elif isinstance(payload, TimerScheduled):
            values: dict[str, Any] = dict(
                kind=payload.kind,
                due_at=payload.due_at,
                status="scheduled",
                ticket_id=payload.ticket_id,
                client_id=payload.client_id,
                message_id=payload.message_id,
                department_id=payload.department_id,
                source_event_id=payload.source_event_id,
                scheduled_at=at,
                fired_at=None,
                cancel_reason=None,
                fired_event_id=None,
            )
            await upsert(conn, timers, {"timer_id": payload.timer_id, **values})
        elif isinstance(payload, TimerCancelled):
            await conn.execute(
                update(timers)
                .where(timers.c.timer_id == payload.timer_id)
                .values(status="cancelled", cancel_reason=payload.reason)
            )
        elif isinstance(payload, DeadlineExpired):
            await conn.execute(
                update(timers)
                .where(timers.c.timer_id == payload.timer_id)
                .values(status="fired", fired_at=at, fired_event_id=str(event.event_id))
            )
        elif isinstance(payload, SubscriptionChanged):
            row: dict[str, Any] = {
                "language": payload.language,
                "notices": orjson.dumps(payload.notices).decode(),
                "version": event.stream_version,
            }
            await upsert(conn, subscriptions, {"staff_id": payload.staff_id, **row})

    async def _delivery(
        self, conn: AsyncConnection, event: RecordedEvent, notice_id: str, **values: Any
    ) -> None:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.notice_id == notice_id)
            .values(version=event.stream_version, **values)
        )


def projections() -> list[Projection]:
    """The read models this service keeps (besides the kernel's event counts)."""
    return [NotifierViews()]


__all__ = ["NotifierViews", "deliveries", "projections", "subscriptions", "timers"]
