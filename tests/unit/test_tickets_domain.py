"""The ticket aggregate: conversation rules, transfer notices, collisions, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.tickets.domain.events import (
    TicketClosed,
    TicketLinkedToClient,
    TicketMessagePosted,
    TicketOpened,
    TicketRated,
    TicketReopened,
    TicketTransferred,
)
from services.tickets.domain.ticket import (
    Author,
    Ticket,
    TicketChanged,
    contact_id,
    seen_by_client,
    thread_id,
)
from shared.domain.aggregate import Conflict, DomainError, NotFound
from shared.domain.events import Actor, DomainEvent

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CLIENT = Author("client", "c-1")
STAFF = Author("staff", "s-1")
CLIENT_ACTOR = Actor("c-1", "client")
STAFF_ACTOR = Actor("s-1", "staff")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def tick(self, minutes: int = 1) -> datetime:
        self.now += timedelta(minutes=minutes)
        return self.now


def apply(ticket: Ticket, events: list[DomainEvent], at: datetime, actor: Actor) -> Ticket:
    for event in events:
        ticket.apply_at(event, at, actor)
        ticket.version += 1
    return ticket


def opened(clock: Clock, **extra: object) -> Ticket:
    events = Ticket.open(
        "t-1",
        client_id="c-1",
        department_id="d-1",
        subject=" Server down ",
        body="It does not answer",
        due_at=T0 + timedelta(hours=4),
        **extra,  # type: ignore[arg-type]
    )
    return apply(Ticket(), events, clock.now, CLIENT_ACTOR)


def test_a_new_ticket_waits_for_staff_with_its_deadline() -> None:
    clock = Clock()
    ticket = opened(clock)
    assert ticket.status == "open" and ticket.version == 1
    assert ticket.waiting_since == T0 and ticket.due_at == T0 + timedelta(hours=4)
    [event] = ticket.history
    assert event.type == "TicketOpened"


@pytest.mark.parametrize(
    ("subject", "body", "field"),
    [("", "b", "subject"), ("   ", "b", "subject"), ("s", "", "body"), ("x" * 201, "b", "subject")],
)
def test_opening_needs_a_subject_and_a_body(subject: str, body: str, field: str) -> None:
    with pytest.raises(DomainError) as error:
        Ticket.open("t", client_id="c", department_id="d", subject=subject, body=body)
    assert error.value.field == field


def test_replies_move_the_status_and_the_waiting_time() -> None:
    clock = Clock()
    ticket = opened(clock)
    staff_reply = ticket.post(STAFF, "Looking", close_due_at=T0 + timedelta(days=7))
    apply(ticket, staff_reply, clock.tick(30), STAFF_ACTOR)
    assert ticket.status == "answered" and ticket.waiting_since is None and ticket.due_at is None
    assert ticket.close_due_at == T0 + timedelta(days=7)
    due = clock.now + timedelta(hours=4)
    reply = ticket.post(CLIENT, "Still down", due_at=due)
    at = clock.tick(5)
    apply(ticket, reply, at, CLIENT_ACTOR)
    assert ticket.status == "open" and ticket.waiting_since == at and ticket.due_at == due
    # A second client message keeps the first one's waiting time and deadline.
    again = ticket.post(CLIENT, "Hello?", due_at=due + timedelta(hours=1))
    assert isinstance(again[0], TicketMessagePosted) and again[0].due_at is None
    apply(ticket, again, clock.tick(5), CLIENT_ACTOR)
    assert ticket.waiting_since == at and ticket.due_at == due


def test_internal_notes_change_nothing_and_clients_never_see_them() -> None:
    clock = Clock()
    ticket = opened(clock)
    note = ticket.post(STAFF, "Customer is grumpy", internal=True)
    apply(ticket, note, clock.tick(), STAFF_ACTOR)
    assert ticket.status == "open" and ticket.waiting_since == T0
    with pytest.raises(DomainError) as error:
        ticket.post(CLIENT, "sneaky", internal=True)
    assert error.value.field == "internal"
    assert [c.type for c in ticket.changes_since(1, "staff")] == ["TicketMessagePosted"]
    assert ticket.changes_since(1, "client") == []


def test_a_closed_ticket_takes_a_client_reply_by_reopening_but_staff_must_reopen() -> None:
    clock = Clock()
    ticket = opened(clock)
    apply(ticket, ticket.close("client"), clock.tick(), CLIENT_ACTOR)
    assert ticket.close("staff") == []  # closing twice writes nothing
    with pytest.raises(Conflict) as error:
        ticket.post(STAFF, "late answer")
    assert error.value.code == "ticket_closed"
    apply(
        ticket,
        ticket.post(STAFF, "note on a closed ticket", internal=True),
        clock.tick(),
        STAFF_ACTOR,
    )
    events = ticket.post(CLIENT, "it broke again", due_at=clock.now)
    assert [type(e) for e in events] == [TicketReopened, TicketMessagePosted]
    apply(ticket, events, clock.tick(), CLIENT_ACTOR)
    assert ticket.status == "open"


def test_replies_forbidden_stops_the_client_only() -> None:
    clock = Clock()
    events = Ticket.open(
        "t-2", client_id="c-1", department_id=None, subject=None, body=None,
        origin="client_message", message_ref="m-1", replies_forbidden=True,
    )  # fmt: skip
    ticket = apply(Ticket(), events, clock.now, STAFF_ACTOR)
    assert ticket.status == "answered" and ticket.waiting_since is None
    assert isinstance(events[0], TicketOpened) and events[0].subject is None
    with pytest.raises(Conflict) as error:
        ticket.post(CLIENT, "thanks")
    assert error.value.code == "replies_forbidden"
    assert ticket.post(STAFF, "one more thing")
    # An expired abuse notice makes the thread wait for staff.
    apply(ticket, ticket.reopen("notice_expired", due_at=T0), clock.tick(), STAFF_ACTOR)
    assert ticket.status == "open" and ticket.due_at == T0


def test_the_client_sees_at_most_the_configured_number_of_transfer_notices() -> None:
    clock = Clock()
    ticket = opened(clock)
    shown = []
    for n in range(5):
        [event] = ticket.transfer(department_id=f"d-{n + 2}", staff_id=None, notices_shown=2)
        assert isinstance(event, TicketTransferred)
        shown.append(event.notice_visible_to_client)
        apply(ticket, [event], clock.tick(), STAFF_ACTOR)
    assert shown == [True, True, False, False, False]
    assert ticket.department_id == "d-6" and ticket.assignee_id is None
    visible = [c for c in ticket.changes_since(1, "client") if c.type == "TicketTransferred"]
    assert len(visible) == 2


def test_transfer_to_a_person_keeps_the_department_and_nothing_is_a_no_op() -> None:
    clock = Clock()
    ticket = opened(clock)
    [event] = ticket.transfer(department_id=None, staff_id="s-2", notices_shown=3)
    assert isinstance(event, TicketTransferred) and event.to_department_id == "d-1"
    apply(ticket, [event], clock.tick(), STAFF_ACTOR)
    assert ticket.assignee_id == "s-2"
    assert ticket.transfer(department_id="d-1", staff_id="s-2", notices_shown=3) == []
    with pytest.raises(DomainError):
        ticket.transfer(department_id=None, staff_id=None, notices_shown=3)


def test_a_command_on_an_older_version_lists_what_changed() -> None:
    clock = Clock()
    ticket = opened(clock)
    apply(ticket, ticket.post(STAFF, "first answer"), clock.tick(), STAFF_ACTOR)
    apply(ticket, ticket.post(STAFF, "secret", internal=True), clock.tick(), STAFF_ACTOR)
    ticket.check_version(3, "staff")  # current: fine
    with pytest.raises(TicketChanged) as error:
        ticket.check_version(1, "staff")
    changes = [c.to_dict() for c in error.value.changes]
    assert [c["type"] for c in changes] == ["TicketMessagePosted", "TicketMessagePosted"]
    assert changes[0]["body"] == "first answer" and changes[0]["actor"]["id"] == "s-1"
    with pytest.raises(TicketChanged) as error:
        ticket.check_version(1, "client")
    assert [c.details["body"] for c in error.value.changes] == ["first answer"]
    with pytest.raises(DomainError):
        ticket.check_version(9, "staff")


def test_ratings_of_the_ticket_and_of_staff_replies() -> None:
    clock = Clock()
    ticket = opened(clock)
    reply = ticket.post(STAFF, "fixed", message_id="m-staff")
    apply(ticket, reply, clock.tick(), STAFF_ACTOR)
    note = ticket.post(STAFF, "internal", internal=True, message_id="m-note")
    apply(ticket, note, clock.tick(), STAFF_ACTOR)
    [rated] = ticket.rate(5, "m-staff")
    assert isinstance(rated, TicketRated) and rated.client_id == "c-1"
    assert ticket.rate(1, None)
    for score in (0, 6):
        with pytest.raises(DomainError) as error:
            ticket.rate(score, None)
        assert error.value.field == "score"
    for message_id in ("m-note", "nope"):
        with pytest.raises(DomainError) as error:
            ticket.rate(3, message_id)
        assert error.value.field == "message_id"
    assert ticket.request_rating("m-staff")
    apply(ticket, ticket.rate(4, "m-staff"), clock.tick(), CLIENT_ACTOR)
    assert ticket.request_rating("m-staff") == []  # rated already
    assert ticket.request_rating(None)


def test_auto_close_only_when_the_client_stayed_silent_until_the_deadline() -> None:
    clock = Clock()
    ticket = opened(clock)
    assert ticket.auto_close(clock.now + timedelta(days=30)) == []  # waits for staff
    apply(
        ticket,
        ticket.post(STAFF, "done?", close_due_at=T0 + timedelta(days=7)),
        clock.tick(),
        STAFF_ACTOR,
    )
    assert ticket.auto_close(T0 + timedelta(days=6)) == []
    [closed] = ticket.auto_close(T0 + timedelta(days=7))
    assert isinstance(closed, TicketClosed) and closed.reason == "auto"
    apply(ticket, ticket.post(CLIENT, "no!", due_at=clock.now), clock.tick(), CLIENT_ACTOR)
    assert ticket.auto_close(T0 + timedelta(days=8)) == []  # the client answered


def test_unknown_tickets_and_thread_ids() -> None:
    with pytest.raises(NotFound):
        Ticket().post(STAFF, "hello")
    assert Ticket().auto_close(T0) == [] and Ticket().request_rating(None) == []
    assert thread_id("c-1", "m-1") == thread_id("c-1", "m-1") != thread_id("c-2", "m-1")


def test_a_contacts_ticket_is_linked_to_one_client_once() -> None:
    clock = Clock()
    contact = contact_id("<first@elsewhere.example.com>")
    assert contact.startswith("contact-") and contact != contact_id("<second@x>")
    with pytest.raises(DomainError) as no_address:
        Ticket.open("t-1", client_id=contact, department_id="d-1", subject="s", body="b",
                    origin="contact")  # fmt: skip
    assert no_address.value.field == "contact_email"
    with pytest.raises(DomainError):  # a contact's ticket never belongs to a client id
        Ticket.open("t-1", client_id="c-1", department_id="d-1", subject="s", body="b",
                    origin="contact", contact_email="x@y")  # fmt: skip
    events = Ticket.open(
        "t-1", client_id=contact, department_id="d-1", subject="Hi", body="Help",
        origin="contact", contact_email="x@elsewhere.example.com", contact_name="X",
    )  # fmt: skip
    ticket = apply(Ticket(), events, clock.now, Actor(contact, "client"))
    assert (ticket.contact_id, ticket.contact_email, ticket.client_id) == (
        contact, "x@elsewhere.example.com", contact,
    )  # fmt: skip
    [linked] = ticket.link_to_client("c-1", "co-1", "p-1")
    assert isinstance(linked, TicketLinkedToClient) and linked.contact_id == contact
    assert not seen_by_client(linked)
    apply(ticket, [linked], clock.tick(), STAFF_ACTOR)
    assert (ticket.client_id, ticket.company_id, ticket.contact_email) == (
        "c-1", "co-1", "x@elsewhere.example.com",
    )  # fmt: skip
    assert ticket.link_to_client("c-1", "co-1", "p-1") == []  # the same client: nothing
    with pytest.raises(Conflict) as other:
        ticket.link_to_client("c-2", None, None)
    assert other.value.code == "already_linked"
    # The contact's later mail is the client's side, on the client's key.
    [posted] = ticket.post(Author("client", contact), "More")
    assert isinstance(posted, TicketMessagePosted) and posted.client_id == "c-1"
    with pytest.raises(Conflict) as own:
        opened(Clock()).link_to_client("c-1", None, None)
    assert own.value.code == "not_from_a_contact"
