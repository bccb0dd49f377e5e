"""The kernel's group commit (``shared.application.grouping``): callers waiting together
share a round, each gets its own answer or refusal, a round's failure reaches its whole
group, a lone caller is served at once, and a caller that goes away cancels nothing."""

from __future__ import annotations

import asyncio

import pytest

from shared.application.grouping import Grouped


class Refused(Exception):
    pass


class Rounds:
    """The work: doubles each number, refuses negatives; records each round's items."""

    def __init__(self) -> None:
        self.rounds: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def __call__(self, items: list[int]) -> list[int | Exception]:
        self.rounds.append(list(items))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [Refused(str(n)) if n < 0 else n * 2 for n in items]


async def _queued(grouped: Grouped[int, int], count: int) -> None:
    while len(grouped._waiting) < count:  # noqa: ASYNC110 - a positive wait, bounded below
        await asyncio.sleep(0)


async def _rounds(work: Rounds, count: int) -> None:
    while len(work.rounds) < count:  # noqa: ASYNC110 - a positive wait, bounded below
        await asyncio.sleep(0)


async def test_a_lone_caller_is_served_at_once_alone() -> None:
    work = Rounds()
    grouped = Grouped(work)
    assert await grouped(3) == 6
    assert work.rounds == [[3]]


async def test_callers_waiting_together_share_one_round_and_get_their_own_answers() -> None:
    work = Rounds()
    grouped = Grouped(work)
    work.gate.clear()
    first = asyncio.create_task(grouped(1))
    await asyncio.wait_for(_rounds(work, 1), 5)  # the first round runs, waits at the gate
    rest = [asyncio.create_task(grouped(n)) for n in (2, -3, 4)]
    await asyncio.wait_for(_queued(grouped, 3), 5)
    work.gate.set()
    assert await first == 2
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert results[0] == 4 and results[2] == 8
    assert isinstance(results[1], Refused) and str(results[1]) == "-3"
    assert work.rounds == [[1], [2, -3, 4]]


async def test_callers_started_together_join_one_round() -> None:
    work = Rounds()
    grouped = Grouped(work)
    assert await asyncio.gather(grouped(1), grouped(2), grouped(3)) == [2, 4, 6]
    assert work.rounds == [[1, 2, 3]]


async def test_a_rounds_failure_reaches_every_caller_of_the_round_only() -> None:
    work = Rounds()
    grouped = Grouped(work)
    work.fail = RuntimeError("database down")
    results = await asyncio.gather(grouped(1), grouped(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    work.fail = None
    assert await grouped(5) == 10


async def test_a_caller_that_goes_away_does_not_cancel_its_groups_round() -> None:
    work = Rounds()
    grouped = Grouped(work)
    work.gate.clear()
    leaving = asyncio.create_task(grouped(1))  # runs the round
    await asyncio.wait_for(_rounds(work, 1), 5)
    staying = asyncio.create_task(grouped(2))
    await asyncio.wait_for(_queued(grouped, 1), 5)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    work.gate.set()
    assert await asyncio.wait_for(staying, 5) == 4
    assert work.rounds == [[1], [2]]


async def test_a_wrong_number_of_results_fails_the_round() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    grouped: Grouped[int, int] = Grouped(short)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        await grouped(1)
