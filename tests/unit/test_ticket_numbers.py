"""Short ticket numbers: the smallest given-back number first, else the next new one."""

from __future__ import annotations

from services.tickets.domain.numbers import FIRST_NUMBER, TicketNumbers


def test_numbers_follow_each_other_and_a_given_back_one_is_taken_again() -> None:
    numbering = TicketNumbers()
    taken = []
    for ticket in ("a", "b", "c"):
        event = numbering.take(ticket)
        numbering.apply(event)
        taken.append(event.number)
    assert taken == [FIRST_NUMBER, FIRST_NUMBER + 1, FIRST_NUMBER + 2]
    numbering.apply(numbering.give_back(FIRST_NUMBER + 1, "b"))
    numbering.apply(numbering.give_back(FIRST_NUMBER, "a"))
    assert numbering.free == [FIRST_NUMBER, FIRST_NUMBER + 1]
    again = numbering.take("d")
    numbering.apply(again)
    assert again.number == FIRST_NUMBER
    then = numbering.take("e")
    numbering.apply(then)
    assert then.number == FIRST_NUMBER + 1
    new = numbering.take("f")
    assert new.number == FIRST_NUMBER + 3


def test_the_last_event_alone_restores_the_numbering() -> None:
    numbering = TicketNumbers()
    last = None
    for ticket in ("a", "b"):
        last = numbering.take(ticket)
        numbering.apply(last)
    returned = numbering.give_back(1, "a")
    restored = TicketNumbers()
    restored.apply(returned)
    assert (restored.next_number, restored.free) == (numbering.next_number, [1])


def test_a_copy_is_decided_on_apart_from_the_numbering_it_came_from() -> None:
    numbering = TicketNumbers()
    numbering.apply(numbering.take("a"))
    numbering.apply(numbering.give_back(FIRST_NUMBER, "a"))
    numbering.version = 2
    copied = numbering.copy()
    assert (copied.next_number, copied.free, copied.version) == (FIRST_NUMBER + 1, [1], 2)
    copied.apply(copied.take("b"))  # a group's decision on the copy
    copied.apply(copied.take("c"))
    assert (copied.next_number, copied.free) == (FIRST_NUMBER + 2, [])
    # The group did not append (yet): the numbering is as it was.
    assert (numbering.next_number, numbering.free, numbering.version) == (FIRST_NUMBER + 1, [1], 2)
