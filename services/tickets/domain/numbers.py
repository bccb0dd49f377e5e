"""Short ticket numbers (``#1042``): what people say and type instead of a UUID.

One stream, ``ticket-numbers``, hands the numbers out. Rules kept here:

* a number is unique per installation: it is taken by appending
  ``TicketNumberTaken`` at the stream's exact version, so two concurrent
  openings cannot take the same one (the second gets a concurrency conflict,
  catches up and takes the next);
* no gaps: a number taken for a ticket whose opening then failed is given
  back (``TicketNumberReturned``) and the next opening takes it again, the
  smallest given-back number first;
* numbers begin at ``FIRST_NUMBER``; every event carries ``next_number`` and
  ``free`` (the state after it), so the service needs only the stream's last
  event to go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.tickets.domain.events import registry
from shared.domain import Aggregate
from shared.domain.events import DomainEvent

NUMBERS_STREAM = "ticket-numbers"
FIRST_NUMBER = 1


@registry.register
class TicketNumberTaken(DomainEvent):
    """``number`` now names ``ticket_id``."""

    event_type = "TicketNumberTaken"
    number: int
    ticket_id: str
    next_number: int
    free: list[int] = []


@registry.register
class TicketNumberReturned(DomainEvent):
    """The opening of ``ticket_id`` failed: ``number`` is free for the next ticket."""

    event_type = "TicketNumberReturned"
    number: int
    ticket_id: str
    next_number: int
    free: list[int] = []


NUMBER_EVENTS = frozenset({"TicketNumberTaken", "TicketNumberReturned"})


@dataclass
class TicketNumbers(Aggregate):
    """The numbering: the next new number and the numbers given back."""

    next_number: int = FIRST_NUMBER
    free: list[int] = field(default_factory=list)

    handles = NUMBER_EVENTS

    def __post_init__(self) -> None:
        super().__init__()

    def copy(self) -> TicketNumbers:
        """The same numbering, apart: a group of requests is decided one after the
        other on a copy, so a group that fails to append leaves this one as it was."""
        copied = TicketNumbers(next_number=self.next_number, free=list(self.free))
        copied.version = self.version
        return copied

    def take(self, ticket_id: str) -> TicketNumberTaken:
        """The smallest given-back number, else the next new one."""
        if self.free:
            number, rest, after = self.free[0], self.free[1:], self.next_number
        else:
            number, rest, after = self.next_number, [], self.next_number + 1
        return TicketNumberTaken(number=number, ticket_id=ticket_id, next_number=after, free=rest)

    def give_back(self, number: int, ticket_id: str) -> TicketNumberReturned:
        return TicketNumberReturned(
            number=number,
            ticket_id=ticket_id,
            next_number=self.next_number,
            free=sorted({*self.free, number}),
        )

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, TicketNumberTaken | TicketNumberReturned):
            self.next_number = event.next_number
            self.free = list(event.free)
