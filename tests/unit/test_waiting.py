"""``until_known``: a command waits, a bounded time, for a copy to know what it names."""

from __future__ import annotations

import asyncio

from shared.application.waiting import until_known


async def test_an_answer_known_at_once_is_not_asked_again() -> None:
    asked: list[int] = []

    async def probe() -> int:
        asked.append(1)
        return 7

    assert await until_known(probe, lambda n: n == 7, seconds=5) == 7
    assert asked == [1]


async def test_it_asks_again_until_the_copy_knows_it() -> None:
    answers = iter([None, None, "department"])

    async def probe() -> str | None:
        return next(answers)

    assert await until_known(probe, lambda found: found is not None, seconds=5) == "department"


async def test_a_name_never_known_costs_the_bound_and_gets_the_last_answer() -> None:
    asked: list[float] = []
    loop = asyncio.get_running_loop()

    async def probe() -> None:
        asked.append(loop.time())

    started = loop.time()
    assert await until_known(probe, lambda found: found is not None, seconds=0.2) is None
    assert asked[-1] - started >= 0.19 and len(asked) > 2  # (the clock read just before)
