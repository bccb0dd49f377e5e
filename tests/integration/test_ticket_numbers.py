"""Short ticket numbers against real PostgreSQL: two replicas opening at once take
distinct numbers with no gap, a number given back is taken by the next ticket, and
openings waiting in one process share one append (group commit)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.tickets.app.numbering import TicketNumbering
from services.tickets.domain.numbers import FIRST_NUMBER
from shared.eventstore import open_event_store


async def test_concurrent_openings_in_two_replicas_take_every_number_once(
    postgres_url: str,
) -> None:
    first = await open_event_store(postgres_url, pool_size=4)
    second = await open_event_store(postgres_url, pool_size=4)
    try:
        replicas = [TicketNumbering(first), TicketNumbering(second)]
        for replica in replicas:
            await replica.start()
        takes = [replicas[i % 2].take(f"ticket-{i}") for i in range(60)]
        numbers = await asyncio.gather(*takes)
        assert sorted(numbers) == list(range(FIRST_NUMBER, FIRST_NUMBER + 60))

        # An opening that failed gives its number back; the next opening (in the
        # other replica) takes it, then numbering goes on where it was.
        await replicas[0].give_back(numbers[7], "ticket-7")
        assert await replicas[1].take("again") == numbers[7]
        assert await replicas[0].take("next") == FIRST_NUMBER + 60

        # A restarted service goes on from the stream's last event.
        restarted = TicketNumbering(first)
        await restarted.start()
        assert await restarted.take("after-restart") == FIRST_NUMBER + 61
    finally:
        await first.close()
        await second.close()


async def test_openings_waiting_in_one_process_take_their_numbers_in_one_append(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_event_store(postgres_url, pool_size=4)
    try:
        numbering = TicketNumbering(store)
        await numbering.start()
        before = numbering.state.next_number
        appends = 0
        append = store.append

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal appends
            appends += 1
            return await append(*args, **kwargs)

        monkeypatch.setattr(store, "append", counted)
        numbers = await asyncio.gather(*(numbering.take(f"group-{i}") for i in range(40)))
        assert sorted(numbers) == list(range(before, before + 40))
        # Started together: one append for all 40 (a round starts once the callers
        # runnable at that moment have queued, ``shared.application.grouping``).
        assert appends == 1
        assert await store.stream_version("ticket-numbers") == numbering.state.version
    finally:
        await store.close()
