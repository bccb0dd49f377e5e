"""Group commit: callers that ask at the same moment are served by one round of work.

Rules it keeps:

* No waiting window: the first caller starts a round after one turn of the
  event loop (no timer), so that the callers already runnable then (tasks
  started together, say by one ``asyncio.gather``) join it; a lone caller is
  served alone, at once. Callers arriving while a round runs queue, and the
  next round takes all of them: under load the groups grow by themselves, and
  the cost of a round (a statement, a commit, a round trip) is shared by its
  group.
* One round at a time per ``Grouped``, run by a task of its own while callers
  are queued: rounds are never concurrent, so a round may keep state between
  rounds (the ticket numbering keeps its numbers so).
* Each caller gets its own answer: ``work`` returns one result per item, in
  order, and a result that is an ``Exception`` is raised to that caller alone
  (one refused item does not fail the rest). An exception raised by ``work``
  itself reaches every caller of the round.
* The callers of a round are answered in the same turn of the loop, so they go
  on side by side (and meet again in the next ``Grouped`` they call).
* A caller that goes away (cancelled) does not cancel the round the rest of its
  group waits for: the rounds' task is nobody's.
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
        self._waiting: list[_Request[T, R]] = []
        self._rounds: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        request: _Request[T, R] = _Request(item, asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        if self._rounds is None:
            self._rounds = asyncio.create_task(self._run())
        return await request.answered

    async def _run(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(0)  # the callers runnable now queue for this round
                group, self._waiting = self._waiting, []
                await self._round(group)
        finally:
            self._rounds = None
            for request in self._waiting:  # only when cancelled (the service stopping)
                request.answered.cancel()
            self._waiting = []

    async def _round(self, group: list[_Request[T, R]]) -> None:
        try:
            results = await self._work([request.item for request in group])
        except Exception as failure:  # every caller of the round gets it
            for request in group:
                _answer(request, failure)
            return
        except BaseException:
            for request in group:
                request.answered.cancel()
            raise
        if len(results) != len(group):
            wrong = RuntimeError(f"{len(results)} results for {len(group)} items")
            for request in group:
                _answer(request, wrong)
            return
        for request, result in zip(group, results, strict=True):
            _answer(request, result)


def _answer(request: _Request[T, R], result: R | Exception) -> None:
    if request.answered.done():  # its caller went away
        return
    if isinstance(result, Exception):
        request.answered.set_exception(result)
    else:
        request.answered.set_result(result)
