"""Taking and giving back short ticket numbers (``services.tickets.domain.numbers``).

Rules it keeps:

* Each take or give-back is one decision on the numbering, appended at the
  numbering's version through the kernel's ``decide_and_append``: replicas
  sharing the store meet as concurrency conflicts, after which the loser reads
  the events it missed and decides again.
* Group commit: openings in one process queue their requests; whoever holds the
  lock decides every request waiting at that moment, one after the other on the
  same state, and appends them in one append (one transaction). Throughput is
  then bounded by the store's commit rate times the group's size, not by one
  commit per opening (which capped a process near 1 / commit latency).
* Number events are the service's own act (actor ``SYSTEM``, no cause): a group
  holds several openers' requests, and who opened a ticket is on its
  ``TicketOpened``, whose ticket id each number event names.
* A request whose group failed to append raises that failure to its opener;
  nothing of the group is stored (one append is atomic).
* The numbering is kept in memory from the stream's last event, read
  incrementally (each event carries the whole numbering after it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from services.tickets.domain.events import registry
from services.tickets.domain.numbers import NUMBERS_STREAM, TicketNumbers, TicketNumberTaken
from shared.application.commands import decide_and_append
from shared.domain.events import DomainEvent
from shared.eventstore import EventStore

Decide = Callable[[TicketNumbers], DomainEvent]


@dataclass
class _Request:
    """One opener's take or give-back, waiting for its group's append."""

    decide: Decide
    decided: asyncio.Future[DomainEvent]


class TicketNumbering:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.state = TicketNumbers()
        self.lock = asyncio.Lock()
        self.waiting: list[_Request] = []

    async def _catch_up(self) -> None:
        """To the stream's last event: each carries the whole numbering after it."""
        head = await self.store.stream_version(NUMBERS_STREAM)
        if head <= self.state.version:
            return
        for recorded in await self.store.read_stream(NUMBERS_STREAM, head, limit=1):
            self.state.apply(registry.decode(recorded))
            self.state.version = recorded.stream_version

    async def take(self, ticket_id: str) -> int:
        """A number for ``ticket_id``: unique, and the smallest free one."""
        taken = await self._decide(lambda state: state.take(ticket_id), ticket_id)
        assert isinstance(taken, TicketNumberTaken)
        return taken.number

    async def give_back(self, number: int, ticket_id: str) -> None:
        """The opening failed: the next ticket takes ``number``."""
        await self._decide(lambda state: state.give_back(number, ticket_id), ticket_id)

    async def _decide(self, decide: Decide, ticket_id: str) -> DomainEvent:
        """Queue ``decide``; the event appended for it (by this call or another's group)."""
        request = _Request(decide, asyncio.get_running_loop().create_future())
        self.waiting.append(request)
        async with self.lock:
            if not request.decided.done():
                group, self.waiting = self.waiting, []
                # Shielded: an opener that goes away (a client hanging up) must not
                # cancel the append the rest of its group waits for.
                await asyncio.shield(self._append_group(group, ticket_id))
        return await request.decided

    async def _append_group(self, group: list[_Request], answer_id: str) -> None:
        loads = 0
        decided: list[DomainEvent] = []

        async def numbering() -> TicketNumbers:
            nonlocal loads
            if loads:  # a replica appended meanwhile: read what it took
                await self._catch_up()
            loads += 1
            return self.state

        def decision(state: TicketNumbers) -> list[DomainEvent]:
            after = state.copy()  # self.state changes only once the group is stored
            decided.clear()
            for request in group:
                event = request.decide(after)
                after.apply(event)
                decided.append(event)
            return decided

        try:
            answer = await decide_and_append(
                self.store, registry, NUMBERS_STREAM, TicketNumbers, decision,
                answer_id=answer_id, loader=numbering,
            )  # fmt: skip
        except Exception as failure:  # each opener gets it from its request
            for request in group:
                request.decided.set_exception(failure)
            return
        except BaseException:
            for request in group:
                request.decided.cancel()
            raise
        for request, event in zip(group, decided, strict=True):
            self.state.apply(event)
            request.decided.set_result(event)
        self.state.version = answer.version

    async def start(self) -> None:
        await self._catch_up()
