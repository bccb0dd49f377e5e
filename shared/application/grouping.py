"""Group commit: callers that ask at the same moment are served by one round of work.

Rules it keeps:

* No waiting window: a caller that finds no round running starts one after one
  turn of the event loop (no timer), so that the callers already runnable then
  (tasks started together, say by one ``asyncio.gather``) join it; a lone caller
  is served alone, at once. Callers arriving while a round runs queue, and the
  next round takes all of them: under load the groups grow by themselves, and
  the cost of a round (a statement, a commit, a round trip) is shared by its
  group.
* One round at a time per ``Grouped``: rounds are never concurrent, so a round
  may keep state between rounds (the ticket numbering keeps its numbers so).
* Each caller gets its own answer: ``work`` returns one result per item, in
  order, and a result that is an ``Exception`` is raised to that caller alone
  (one refused item does not fail the rest). An exception raised by ``work``
  itself reaches every caller of the round.
* A caller that goes away (cancelled) does not cancel the round the rest of its
  group waits for: the round is shielded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Work = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]


@dataclass
class _Request(Generic[T, R]):
    item: T
    answered: asyncio.Future[R]


class Grouped(Generic[T, R]):
    """``await grouped(item)``: ``work`` run on ``item`` and everything queued with it."""

    def __init__(self, work: Work[T, R]) -> None:
        self._work = work
        self._lock = asyncio.Lock()
        self._waiting: list[_Request[T, R]] = []

    async def __call__(self, item: T) -> R:
        request: _Request[T, R] = _Request(item, asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        async with self._lock:
            if not request.answered.done():
                await asyncio.sleep(0)  # the callers runnable now queue for this round
                group, self._waiting = self._waiting, []
                await asyncio.shield(self._round(group))
        return await request.answered

    async def _round(self, group: list[_Request[T, R]]) -> None:
        try:
            results = await self._work([request.item for request in group])
        except Exception as failure:  # every caller of the round gets it
            for request in group:
                request.answered.set_exception(failure)
            return
        except BaseException:
            for request in group:
                request.answered.cancel()
            raise
        if len(results) != len(group):
            wrong = RuntimeError(f"{len(results)} results for {len(group)} items")
            for request in group:
                request.answered.set_exception(wrong)
            return
        for request, result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                request.answered.set_exception(result)
            else:
                request.answered.set_result(result)
