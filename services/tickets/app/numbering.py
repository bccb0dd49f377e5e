"""Taking and giving back short ticket numbers (``services.tickets.domain.numbers``).

Openings in one process take their numbers one after the other (an asyncio
lock around one append at the known version: no conflict, no re-read);
replicas sharing the store meet as concurrency conflicts, after which the
loser reads the events it missed and tries again. The numbering is kept in
memory from the stream's last event, read incrementally.
"""

from __future__ import annotations

import asyncio

from services.tickets.domain.events import registry
from services.tickets.domain.numbers import NUMBERS_STREAM, TicketNumbers
from shared.domain.events import SYSTEM, Actor, DomainEvent, RecordedEvent
from shared.eventstore import ConcurrencyError, EventStore, StreamState

ATTEMPTS = 50


class TicketNumbering:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.state = TicketNumbers()
        self.lock = asyncio.Lock()

    async def _catch_up(self) -> None:
        """To the stream's last event: each carries the whole numbering after it."""
        head = await self.store.stream_version(NUMBERS_STREAM)
        if head <= self.state.version:
            return
        for recorded in await self.store.read_stream(NUMBERS_STREAM, head, limit=1):
            self.state.apply(registry.decode(recorded))
            self.state.version = recorded.stream_version

    async def take(
        self, ticket_id: str, actor: Actor = SYSTEM, cause: RecordedEvent | None = None
    ) -> int:
        """A number for ``ticket_id``: unique, and the smallest free one. ``cause``: the
        event of another context the ticket is opened for (its correlation goes on)."""
        async with self.lock:
            for _attempt in range(ATTEMPTS):
                event = self.state.take(ticket_id)
                if await self._try(event, actor, cause):
                    return event.number
            raise ConcurrencyError(NUMBERS_STREAM, self.state.version, -1)

    async def give_back(
        self,
        number: int,
        ticket_id: str,
        actor: Actor = SYSTEM,
        cause: RecordedEvent | None = None,
    ) -> None:
        """The opening failed: the next ticket takes ``number``."""
        async with self.lock:
            for _attempt in range(ATTEMPTS):
                if await self._try(self.state.give_back(number, ticket_id), actor, cause):
                    return

    async def _try(self, event: DomainEvent, actor: Actor, cause: RecordedEvent | None) -> bool:
        expected = self.state.version or StreamState.NO_STREAM
        encoded = registry.encode(
            event,
            actor=actor,
            correlation_id=cause.correlation_id if cause else None,
            causation_id=cause.event_id if cause else None,
        )
        try:
            result = await self.store.append(NUMBERS_STREAM, [encoded], expected)
        except ConcurrencyError:
            await self._catch_up()  # another replica took one
            return False
        self.state.apply(event)
        self.state.version = result.stream_version
        return True

    async def start(self) -> None:
        await self._catch_up()
