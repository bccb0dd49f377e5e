"""The postman's and the timekeeper's waits: a move of the read model that happened
while they looked for work ends the wait at once (no lost wake-up, no idle second).
Both wait through the kernel's ``ProjectionRunner.moved_since``, tested here too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from services.notifier.app.postman import IDLE_SECONDS, Postman
from services.notifier.app.timekeeper import Timekeeper
from services.notifier.domain.delivery import RetryPolicy
from shared.projections.runner import ProjectionRunner


class _Nothing:
    def scalar(self) -> None:
        return None


class _Reading:
    """A read model with nothing queued and no timer set."""

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Any]:
        class Connection:
            async def execute(self, _: Any) -> _Nothing:
                return _Nothing()

        yield Connection()


def _views(position: int) -> ProjectionRunner:
    """A read model that has already applied ``position`` (the kernel's runner; no store
    or database: only its position and its wake-ups are used)."""
    runner = ProjectionRunner(None, None, None)  # type: ignore[arg-type]
    runner.position = position
    return runner


async def test_moved_since_ends_at_once_on_an_earlier_move_and_wakes_on_a_later_one() -> None:
    views = _views(5)
    assert await asyncio.wait_for(views.moved_since(4, IDLE_SECONDS), IDLE_SECONDS / 2)
    waiting = asyncio.ensure_future(views.moved_since(5, 30))
    await asyncio.sleep(0)  # the wait has begun
    await views.advanced(6)  # a projection commits position 6
    assert await asyncio.wait_for(waiting, IDLE_SECONDS / 2)
    assert not await views.moved_since(6, 0.01)  # nothing past 6: times out


async def test_a_notice_queued_while_the_postman_looked_ends_its_wait_at_once() -> None:
    # The round began at position 4; the notice's row arrived meanwhile (5).
    postman = Postman(None, _Reading(), _views(5), None, None, RetryPolicy())  # type: ignore[arg-type]
    await asyncio.wait_for(postman._wait(seen=4), IDLE_SECONDS / 2)


async def test_a_timer_set_while_the_timekeeper_looked_ends_its_wait_at_once() -> None:
    timekeeper = Timekeeper(None, _Reading(), _views(5))  # type: ignore[arg-type]
    await asyncio.wait_for(timekeeper._wait(seen=4), IDLE_SECONDS / 2)
