"""Waiting, a bounded time, for a copy of another context to know what a command names.

Another context's entity created a moment ago reaches this service's copy of
it through its topic a moment later. A command naming it asks again until the
copy knows it, for at most ``seconds``, and then decides on what the copy has:
so "no such department" (422) means it really is not there, not that the topic
is a moment behind (issue 17, part 7). Rules kept:

* the wait is bounded: a name that never existed costs ``seconds`` and no more;
* the answer is the probe's own, fresh: nothing is kept between commands;
* the pause between asks is short (the copy usually catches up within tens of
  milliseconds), and nothing waits when the first ask already knows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# How long a command waits for a copy to know a name it was given.
COPY_WAIT_SECONDS = 3.0
PAUSE_SECONDS = 0.02


async def until_known(
    probe: Callable[[], Awaitable[T]],
    known: Callable[[T], bool],
    seconds: float = COPY_WAIT_SECONDS,
) -> T:
    """``probe()``'s answer once ``known`` accepts it, or its last one after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    answer = await probe()
    while not known(answer) and loop.time() < deadline:
        await asyncio.sleep(PAUSE_SECONDS)
        answer = await probe()
    return answer
