"""The postman: sends queued notices by e-mail or SMS, retries with back-off, gives up.

It reads what is due from the ``notifier_deliveries`` read model, but decides
on the notice's own stream: a notice the store says is already sent (the read
model lagging, say) is not sent again, and the outcome is appended with the
version loaded, so two postmen never record one notice twice.

The one gap no SMTP client can close: a crash after the server accepted a mail
and before ``NoticeSent`` is stored sends it again after the restart. The mail
carries the same ``Message-ID`` both times, so a receiving server can drop it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import or_, select

from services.notifier.app.ports import DeliveryError, Mailer, Sms
from services.notifier.domain.delivery import Delivery, RetryPolicy, stream_of
from services.notifier.domain.events import registry
from services.notifier.projections import deliveries
from shared.application.commands import append, load
from shared.domain.events import Actor, utcnow
from shared.eventstore import ConcurrencyError, EventStore
from shared.projections.runner import ProjectionRunner
from shared.readmodel.database import ReadModelDB

log = structlog.get_logger(__name__)

ACTOR = Actor(id="notifier", kind="system")
IDLE_SECONDS = 1.0


class Postman:
    def __init__(
        self,
        store: EventStore,
        db: ReadModelDB,
        views: ProjectionRunner,
        mailer: Mailer,
        sms: Sms,
        policy: RetryPolicy,
        concurrency: int = 8,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.db = db
        self.views = views
        self.mailer = mailer
        self.sms = sms
        self.policy = policy
        self.concurrency = concurrency
        self.clock = clock
        self.sent = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            seen = self.views.position  # before the round's query (``moved_since``)
            if not await self.round():
                await self._wait(seen)

    async def round(self) -> int:
        """Try every notice due now; how many were tried."""
        now = self.clock()
        async with self.db.reading() as conn:
            due = list(
                await conn.execute(
                    select(deliveries)
                    .where(
                        deliveries.c.status.in_(("queued", "retrying")),
                        or_(
                            deliveries.c.next_attempt_at.is_(None),
                            deliveries.c.next_attempt_at <= now,
                        ),
                    )
                    .order_by(deliveries.c.next_attempt_at)
                    .limit(self.concurrency * 8)
                )
            )
        if not due:
            return 0
        gate = asyncio.Semaphore(self.concurrency)

        async def one(row: Any) -> bool:
            async with gate:
                return await self.deliver(row)

        tried = await asyncio.gather(*(one(row) for row in due))
        return sum(tried)

    async def deliver(self, row: Any) -> bool:
        """One attempt at one notice; False when there was nothing to do."""
        stream = stream_of(row.notice_id)
        delivery = await load(self.store, registry, stream, Delivery)
        if not delivery.pending or delivery.attempts != row.attempts:
            return False  # already done, or the read model is behind: next round
        try:
            if row.to is None or row.body is None:
                raise DeliveryError("the recipient's data was erased")
            if row.channel == "email":
                await self.mailer.send(
                    row.notice_id, row.to, row.subject or "", row.body,
                    thread_id=row.thread_id, reply_to=row.reply_to, files=row.files,
                    rating_of=row.rating_of, client_id=row.subject_id, reset_of=row.reset_of,
                )  # fmt: skip
            else:
                await self.sms.send(row.notice_id, row.to, row.body)
        except DeliveryError as error:
            events = delivery.attempt_failed(str(error), self.clock(), self.policy)
            log.warning(
                "notifier.delivery_failed",
                notice_id=row.notice_id, channel=row.channel, attempt=delivery.attempts + 1,
                error=str(error), final=events[0].event_type == "NoticeFailed" if events else None,
            )  # fmt: skip
        else:
            events = delivery.sent(self.clock())
            self.sent += 1
        try:
            await append(self.store, registry, stream, events, delivery.version, actor=ACTOR)
        except ConcurrencyError:
            log.warning("notifier.delivery_raced", notice_id=row.notice_id)
        return True

    async def _wait(self, seen: int) -> None:
        """Until the read model moves past ``seen``, a retry is due, someone wakes us, or a
        second passed."""
        async with self.db.reading() as conn:
            next_retry = (
                await conn.execute(
                    select(deliveries.c.next_attempt_at)
                    .where(deliveries.c.status.in_(("queued", "retrying")))
                    .order_by(deliveries.c.next_attempt_at)
                    .limit(1)
                )
            ).scalar()
        timeout = IDLE_SECONDS
        if isinstance(next_retry, datetime):
            timeout = max(0.0, min(timeout, (next_retry - self.clock()).total_seconds()))
        if timeout <= 0:
            return
        moved = asyncio.ensure_future(self.views.moved_since(seen, timeout))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({moved, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            moved.cancel()
            woken.cancel()
            self._wake.clear()
