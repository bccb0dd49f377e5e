"""Taking and giving back short ticket numbers (``services.tickets.domain.numbers``).

Rules it keeps:

* Each take or give-back is one decision on the numbering, appended at the
  numbering's version through the kernel's ``decide_and_append``: replicas
  sharing the store meet as concurrency conflicts, after which the loser reads
  the events it missed and decides again.
* Group commit (the kernel's ``shared.application.grouping``): openings in one
  process queue their requests; each round decides every request waiting at that
  moment, one after the other on the same state, and appends them in one append
  (one transaction). Throughput is
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

from collections.abc import Callable

from services.tickets.domain.events import registry
from services.tickets.domain.numbers import NUMBERS_STREAM, TicketNumbers, TicketNumberTaken
from shared.application.commands import decide_and_append
from shared.application.grouping import Grouped
from shared.domain.events import DomainEvent
from shared.eventstore import EventStore

Decide = Callable[[TicketNumbers], DomainEvent]


class TicketNumbering:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.state = TicketNumbers()
        # The kernel's group commit: one append per group of waiting requests.
        self._grouped: Grouped[tuple[Decide, str], DomainEvent] = Grouped(self._append_group)

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
        taken = await self._grouped((lambda state: state.take(ticket_id), ticket_id))
        assert isinstance(taken, TicketNumberTaken)
        return taken.number

    async def give_back(self, number: int, ticket_id: str) -> None:
        """The opening failed: the next ticket takes ``number``."""
        await self._grouped((lambda state: state.give_back(number, ticket_id), ticket_id))

    async def _append_group(self, group: list[tuple[Decide, str]]) -> list[DomainEvent]:
        """Every request of the group decided in turn, appended at once (or none)."""
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
            for decide, _ in group:
                event = decide(after)
                after.apply(event)
                decided.append(event)
            return decided

        answer = await decide_and_append(
            self.store, registry, NUMBERS_STREAM, TicketNumbers, decision,
            answer_id=group[0][1], loader=numbering,
        )  # fmt: skip
        for event in decided:
            self.state.apply(event)
        self.state.version = answer.version
        return decided

    async def start(self) -> None:
        await self._catch_up()
