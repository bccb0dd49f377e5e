"""Taking and giving back short ticket numbers (``services.tickets.domain.numbers``).

Each take or give-back is one decision on the numbering appended at its version
through the kernel's ``decide_and_append``. Openings in one process take their
numbers one after the other (an asyncio lock: no conflict, no re-read); replicas
sharing the store meet as concurrency conflicts, after which the loser reads the
events it missed and decides again. The numbering is kept in memory from the
stream's last event, read incrementally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from services.tickets.domain.events import registry
from services.tickets.domain.numbers import NUMBERS_STREAM, TicketNumbers
from shared.application.commands import decide_and_append
from shared.domain.events import SYSTEM, Actor, DomainEvent, RecordedEvent
from shared.eventstore import EventStore

E = TypeVar("E", bound=DomainEvent)


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
        taken = await self._decide(lambda state: state.take(ticket_id), ticket_id, actor, cause)
        return taken.number

    async def give_back(
        self,
        number: int,
        ticket_id: str,
        actor: Actor = SYSTEM,
        cause: RecordedEvent | None = None,
    ) -> None:
        """The opening failed: the next ticket takes ``number``."""
        await self._decide(
            lambda state: state.give_back(number, ticket_id), ticket_id, actor, cause
        )

    async def _decide(
        self,
        decide: Callable[[TicketNumbers], E],
        ticket_id: str,
        actor: Actor,
        cause: RecordedEvent | None,
    ) -> E:
        """Append what ``decide`` makes of the numbering; the event appended."""
        async with self.lock:
            loads = 0
            decided: list[E] = []

            async def numbering() -> TicketNumbers:
                nonlocal loads
                if loads:  # a replica appended meanwhile: read what it took
                    await self._catch_up()
                loads += 1
                return self.state

            def decision(state: TicketNumbers) -> list[E]:
                decided[:] = [decide(state)]
                return decided

            answer = await decide_and_append(
                self.store,
                registry,
                NUMBERS_STREAM,
                TicketNumbers,
                decision,
                answer_id=ticket_id,
                actor=actor,
                loader=numbering,
                cause=cause,
            )
            self.state.apply(decided[0])
            self.state.version = answer.version
            return decided[0]

    async def start(self) -> None:
        await self._catch_up()
