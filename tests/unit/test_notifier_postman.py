"""The postman's and the timekeeper's waits: a move of the read model that happened
while they looked for work ends the wait at once (no lost wake-up, no idle second)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from services.notifier.app.postman import IDLE_SECONDS, Postman
from services.notifier.app.timekeeper import Timekeeper
from services.notifier.domain.delivery import RetryPolicy


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


class _Views:
    """A read model that has already applied ``position``."""

    def __init__(self, position: int) -> None:
        self.position = position

    async def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        if self.position >= position:
            return True
        await asyncio.sleep(timeout)
        return False


async def test_a_notice_queued_while_the_postman_looked_ends_its_wait_at_once() -> None:
    # The round began at position 4; the notice's row arrived meanwhile (5).
    postman = Postman(None, _Reading(), _Views(5), None, None, RetryPolicy())  # type: ignore[arg-type]
    await asyncio.wait_for(postman._wait(seen=4), IDLE_SECONDS / 2)


async def test_a_timer_set_while_the_timekeeper_looked_ends_its_wait_at_once() -> None:
    timekeeper = Timekeeper(None, _Reading(), _Views(5))  # type: ignore[arg-type]
    await asyncio.wait_for(timekeeper._wait(seen=4), IDLE_SECONDS / 2)
