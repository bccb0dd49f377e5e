"""The timekeeper: fires every timer whose moment has come, once.

It reads due timers from the ``notifier_timers`` read model and decides on the
timer's own stream (``Timer.fire``, appended with the version it loaded), so a
timer fires once however often it is looked at. After a restart the first
pass finds the timers that came due while the notifier was down and fires
each of them once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy import func, select

from services.notifier.domain.events import registry
from services.notifier.domain.timer import Timer, stream_of
from services.notifier.projections import timers
from shared.application.commands import decide_and_append
from shared.domain.events import Actor, utcnow
from shared.eventstore import EventStore
from shared.projections.runner import ProjectionRunner
from shared.readmodel.database import ReadModelDB

log = structlog.get_logger(__name__)

ACTOR = Actor(id="notifier", kind="system")
FIRED = uuid.UUID("a3c1f5d0-2b7e-4e8a-9f61-7d2c0e4b9a55")
IDLE_SECONDS = 1.0


class Timekeeper:
    def __init__(
        self,
        store: EventStore,
        db: ReadModelDB,
        views: ProjectionRunner,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.db = db
        self.views = views
        self.clock = clock
        self.fired = 0

    async def run(self) -> None:
        while True:
            seen = self.views.position  # before the tick's query (``moved_since``)
            await self.tick()
            await self._wait(seen)

    async def tick(self) -> int:
        """Fire every timer due now; how many fired."""
        now = self.clock()
        async with self.db.reading() as conn:
            due = list(
                (
                    await conn.execute(
                        select(timers.c.timer_id)
                        .where(timers.c.status == "scheduled", timers.c.due_at <= now)
                        .order_by(timers.c.due_at)
                        .limit(500)
                    )
                ).scalars()
            )
        fired = 0
        for timer_id in due:
            fired += await self.fire(timer_id, now)
        return fired

    async def fire(self, timer_id: str, now: datetime) -> int:
        stream = stream_of(timer_id)
        # Moved or cancelled meanwhile: decided again; the id follows the version.
        answer = await decide_and_append(
            self.store,
            registry,
            stream,
            Timer,
            lambda timer: timer.fire(now),
            answer_id=timer_id,
            actor=ACTOR,
            event_ids=lambda timer, events: [
                uuid.uuid5(FIRED, f"{stream}/{timer.version}") for _ in events
            ],
        )
        if not answer.position:
            return 0
        self.fired += 1
        log.info("notifier.timer_fired", timer_id=timer_id)
        return 1

    async def _wait(self, seen: int) -> None:
        """Until the next timer is due, the read model moves past ``seen``, or a second
        has passed."""
        async with self.db.reading() as conn:
            next_due = (
                await conn.execute(
                    select(func.min(timers.c.due_at)).where(timers.c.status == "scheduled")
                )
            ).scalar()
        timeout = IDLE_SECONDS
        if isinstance(next_due, datetime):
            timeout = max(0.0, min(timeout, (next_due - self.clock()).total_seconds()))
        if timeout > 0:
            await self.views.moved_since(seen, timeout)
        else:
            await asyncio.sleep(0)
