"""Support reports, the pure part: what each ticket event adds to the figures, and the
reports summed from the stored rows (``services.tickets.projections.reports``)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.tickets.domain.events import TicketEvent
from services.tickets.domain.ticket import Author, Ticket
from services.tickets.projections.reports import (
    NO_DEPARTMENT,
    NOBODY,
    AnsweredDelta,
    AnsweredRow,
    Delta,
    RatingDelta,
    RatingRow,
    ResponseDelta,
    ResponseRow,
    TicketTrack,
    answered_report,
    epoch_ms,
    month_of,
    ratings_report,
    response_times_report,
)
from shared.domain.events import Actor, DomainEvent

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CLIENT = Author("client", "c-1")
ALICE = Author("staff", "alice")
BOB = Author("staff", "bob")


class History:
    """One ticket driven through the aggregate; every event also goes through its
    ``TicketTrack`` (stored and loaded again as JSON, as the projection does), and
    the deltas are summed the way the projection's tables sum them."""

    def __init__(self, ticket: Ticket, track: TicketTrack) -> None:
        self.ticket = ticket
        self.track = track
        self.now = T0
        self.deltas: list[Delta] = []
        self.responses: dict[tuple[str, str, str], Counter[str]] = {}
        self.answered: dict[tuple[str, str, str, str], int] = {}
        self.ratings: Counter[tuple[str, str, str, str, int]] = Counter()

    @classmethod
    def opened(cls, *, department: str | None = "d-1", origin: str = "client") -> History:
        if origin == "client_message":
            [event] = Ticket.open(
                "t-1",
                client_id="c-1",
                department_id=None,
                subject=None,
                body=None,
                origin="client_message",
                message_ref="m-1",
                message_id="first",
            )
            actor = Actor("alice", "staff")
        else:
            [event] = Ticket.open(
                "t-1",
                client_id="c-1",
                department_id=department,
                subject="Down",
                body="Help",
                origin="client" if origin == "client" else "staff",
                message_id="first",
            )
            actor = Actor("c-1", "client") if origin == "client" else Actor("alice", "staff")
        assert isinstance(event, TicketEvent)
        ticket = Ticket.replayed([(event, T0, actor)])
        return cls(ticket, TicketTrack.opened(event, T0, actor))

    def at(self, seconds: float) -> History:
        self.now = T0 + timedelta(seconds=seconds)
        return self

    def apply(self, events: list[DomainEvent], actor: Actor) -> list[Delta]:
        made: list[Delta] = []
        for event in events:
            assert isinstance(event, TicketEvent)
            self.ticket.apply_at(event, self.now, actor)
            self.ticket.version += 1
            self.track = TicketTrack.from_json("t-1", self.track.to_json())
            made += self.track.step(event, self.now)
        for delta in made:
            if isinstance(delta, ResponseDelta):
                sums = self.responses.setdefault(
                    (delta.month, delta.department_id, delta.staff_id), Counter()
                )
                sums.update(
                    first_count=delta.first_count,
                    first_ms=delta.first_ms,
                    response_count=delta.response_count,
                    response_ms=delta.response_ms,
                )
            elif isinstance(delta, AnsweredDelta):
                key = (delta.ticket_id, delta.month, delta.department_id, delta.staff_id)
                self.answered[key] = self.answered.get(key, 0) + 1
            else:
                bucket = (delta.month, delta.department_id, delta.staff_id, delta.kind, delta.score)
                self.ratings[bucket] += delta.change
        self.deltas += made
        return made

    def reply(self, who: Author, body: str = "text", *, internal: bool = False) -> str:
        message_id = f"m{len(self.ticket.messages)}"
        self.apply(
            self.ticket.post(who, body, internal=internal, message_id=message_id),
            Actor(who.id, who.kind),
        )
        return message_id

    def rate(self, score: int, message_id: str | None = None) -> list[Delta]:
        return self.apply(self.ticket.rate(score, message_id), Actor("c-1", "client"))

    def staff(self, events: list[DomainEvent], who: Author = ALICE) -> list[Delta]:
        return self.apply(events, Actor(who.id, who.kind))

    def response_rows(self) -> list[ResponseRow]:
        return [
            ResponseRow(
                d, s, c["first_count"], c["first_ms"], c["response_count"], c["response_ms"]
            )
            for (_, d, s), c in self.responses.items()
        ]

    def rating_rows(self) -> list[RatingRow]:
        return [
            RatingRow(d, s, kind, score, n) for (_, d, s, kind, score), n in self.ratings.items()
        ]


# ---------------------------------------------------------------- response times


def test_first_response_runs_from_opening_to_the_first_reply_the_client_sees() -> None:
    h = History.opened()
    h.at(30).reply(ALICE, internal=True)  # a note is no response
    assert h.deltas == []
    h.at(90).reply(ALICE)
    assert h.deltas == [
        ResponseDelta("2026-03", "d-1", "alice", 1, 90_000, 1, 90_000),
        AnsweredDelta("2026-03", "d-1", "alice", "t-1"),
    ]
    h.at(100).reply(BOB)  # a second reply ends nothing, but answers the ticket too
    assert h.deltas[2:] == [AnsweredDelta("2026-03", "d-1", "bob", "t-1")]


def test_each_client_message_counts_until_the_next_staff_reply() -> None:
    h = History.opened()
    h.at(60).reply(ALICE)
    h.at(100).reply(CLIENT)
    h.at(130).reply(CLIENT)
    h.at(150).reply(ALICE, internal=True)
    made = h.at(200).apply(h.ticket.post(BOB, "x", message_id="b1"), Actor("bob", "staff"))
    # two messages: 100 s and 70 s; no first response any more
    assert made[0] == ResponseDelta("2026-03", "d-1", "bob", 0, 0, 2, 170_000)
    h.at(300).reply(BOB)  # nothing was waiting: no figure, still a reply
    assert [type(d) for d in h.deltas[4:]] == [AnsweredDelta]
    report = response_times_report(h.response_rows())
    assert report.total.first_response.count == 1
    assert report.total.first_response.average_seconds == 60.0
    assert report.total.response.count == 3  # the opening message and the two
    assert report.total.response.average_seconds == pytest.approx((60 + 100 + 70) / 3, abs=1e-3)
    [alice, bob] = report.staff
    assert (alice.staff_id, alice.response.count, alice.response.average_seconds) == (
        "alice",
        1,
        60.0,
    )
    assert (bob.staff_id, bob.response.count, bob.response.average_seconds) == ("bob", 2, 85.0)
    assert bob.first_response.count == 0 and bob.first_response.average_seconds is None


def test_a_transfer_moves_later_figures_to_the_new_department() -> None:
    h = History.opened()
    h.at(10).staff(h.ticket.transfer(department_id="d-2", staff_id=None, notices_shown=3))
    h.at(70).reply(BOB)
    assert h.deltas[0] == ResponseDelta("2026-03", "d-2", "bob", 1, 70_000, 1, 70_000)
    [department] = response_times_report(h.response_rows()).departments
    assert department.department_id == "d-2"


def test_closing_drops_what_waits_and_a_reply_after_reopening_counts_again() -> None:
    h = History.opened()
    h.at(50).staff(h.ticket.close("client"))
    h.at(60).reply(CLIENT)  # reopens the ticket, and waits
    h.at(100).staff(h.ticket.reopen("staff"))  # no message of the client: nothing new
    h.at(160).reply(ALICE)
    assert h.deltas[0] == ResponseDelta("2026-03", "d-1", "alice", 0, 0, 1, 100_000)


def test_a_thread_staff_began_has_no_first_response() -> None:
    h = History.opened(origin="client_message")
    h.at(40).reply(ALICE)  # staff write again: nothing was waiting
    h.at(100).reply(CLIENT)
    h.at(400).reply(BOB)
    responses = [d for d in h.deltas if isinstance(d, ResponseDelta)]
    assert responses == [ResponseDelta("2026-03", NO_DEPARTMENT, "bob", 0, 0, 1, 300_000)]
    report = response_times_report(h.response_rows())
    assert [d.department_id for d in report.departments] == [None]


def test_a_ticket_staff_opened_for_the_client_waits_for_staff_like_any_other() -> None:
    h = History.opened(origin="staff")
    h.at(20).reply(BOB)
    assert h.deltas[0] == ResponseDelta("2026-03", "d-1", "bob", 1, 20_000, 1, 20_000)


def test_figures_belong_to_the_month_of_the_reply_that_ends_them() -> None:
    h = History.opened()
    end_of_month = (datetime(2026, 4, 1, tzinfo=UTC) - T0).total_seconds()
    h.at(end_of_month + 5).reply(ALICE)
    assert h.deltas[0] == ResponseDelta(
        "2026-04", "d-1", "alice", 1, int(end_of_month + 5) * 1000, 1, int(end_of_month + 5) * 1000
    )
    assert month_of(datetime(2026, 3, 31, 23, 59, tzinfo=UTC)) == "2026-03"
    # Months are UTC months, whatever zone a moment comes in.
    assert month_of(datetime(2026, 4, 1, 1, 0, tzinfo=ZoneInfo("Europe/Moscow"))) == "2026-03"


def test_milliseconds_are_exact_integers() -> None:
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 1, 999, tzinfo=UTC)) == 1000
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 1, 1999, tzinfo=UTC)) == 1001
    assert epoch_ms(T0) == int(T0.timestamp()) * 1000


# ---------------------------------------------------------------- answered


def test_answered_counts_distinct_tickets_and_replies_per_month_department_and_staff() -> None:
    marks = {  # (ticket, month, department, staff) -> replies
        ("t-1", "2026-03", "d-1", "alice"): 2,
        ("t-1", "2026-03", "d-1", "bob"): 1,
        ("t-2", "2026-03", "d-2", "bob"): 1,
        ("t-1", "2026-04", "d-1", "alice"): 1,
        ("t-3", "2026-04", "", "carol"): 3,
    }

    def grouped(index: int | None) -> list[AnsweredRow]:
        groups: dict[tuple[str, str], tuple[set[str], int]] = {}
        for (ticket, month, *keys), replies in marks.items():
            key = (month, "" if index is None else keys[index])
            tickets, total = groups.get(key, (set(), 0))
            groups[key] = (tickets | {ticket}, total + replies)
        return [AnsweredRow(m, k, len(t), r) for (m, k), (t, r) in groups.items()]

    report = answered_report(grouped(None), grouped(0), grouped(1))
    march, april = report.months
    assert (march.month, march.tickets, march.replies) == ("2026-03", 2, 4)
    assert [(d.department_id, d.tickets, d.replies) for d in march.departments] == [
        ("d-1", 1, 3),
        ("d-2", 1, 1),
    ]
    assert [(s.staff_id, s.tickets, s.replies) for s in march.staff] == [
        ("alice", 1, 2),
        ("bob", 2, 2),
    ]
    assert (april.tickets, april.replies) == (2, 4)
    assert [d.department_id for d in april.departments] == [None, "d-1"]


def test_the_projection_marks_every_reply_of_the_ticket() -> None:
    h = History.opened()
    h.at(10).reply(ALICE)
    h.at(20).reply(ALICE)
    h.at(30).reply(ALICE, internal=True)
    h.at(40).reply(BOB)
    assert h.answered == {
        ("t-1", "2026-03", "d-1", "alice"): 2,
        ("t-1", "2026-03", "d-1", "bob"): 1,
    }


# ---------------------------------------------------------------- ratings


def test_a_reply_rating_goes_to_its_author_and_the_department_of_that_moment() -> None:
    h = History.opened()
    first = h.at(10).reply(ALICE)
    h.at(20).staff(h.ticket.transfer(department_id="d-2", staff_id="bob", notices_shown=3))
    h.at(30).reply(BOB)
    assert h.at(40).rate(4, first) == [RatingDelta("2026-03", "d-1", "alice", "message", 4, 1)]
    # A new rating of the same reply replaces the earlier one.
    assert h.at(50).rate(5, first) == [
        RatingDelta("2026-03", "d-1", "alice", "message", 4, -1),
        RatingDelta("2026-03", "d-1", "alice", "message", 5, 1),
    ]
    assert h.at(60).rate(5, first) == []  # the same again changes nothing
    # The whole ticket: its department now and the last staff replier.
    assert h.at(70).rate(2) == [RatingDelta("2026-03", "d-2", "bob", "ticket", 2, 1)]

    report = ratings_report(h.rating_rows())
    assert report.total.all.count == 2 and report.total.all.average == 3.5
    assert report.total.message.scores == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1}
    assert report.total.ticket.scores == {"1": 0, "2": 1, "3": 0, "4": 0, "5": 0}
    d1, d2 = report.departments
    assert (d1.department_id, d1.all.count, d1.message.average) == ("d-1", 1, 5.0)
    assert (d2.department_id, d2.ticket.count, d2.ticket.average, d2.message.count) == (
        "d-2",
        1,
        2.0,
        0,
    )
    alice, bob = report.staff
    assert (alice.staff_id, alice.message.average, alice.ticket.count) == ("alice", 5.0, 0)
    assert (bob.staff_id, bob.ticket.average, bob.message.average) == ("bob", 2.0, None)


def test_a_rating_replaced_in_a_later_month_leaves_the_earlier_month() -> None:
    h = History.opened()
    h.at(10).reply(ALICE)
    h.at(20).rate(1)
    next_month = (datetime(2026, 4, 2, tzinfo=UTC) - T0).total_seconds()
    h.at(next_month).rate(4)
    assert h.ratings[("2026-03", "d-1", "alice", "ticket", 1)] == 0
    assert h.ratings[("2026-04", "d-1", "alice", "ticket", 4)] == 1
    report = ratings_report(h.rating_rows())
    assert [d.all.scores["1"] for d in report.departments] == [0]
    assert report.total.all.average == 4.0
    march_only = ratings_report(
        RatingRow(d, s, k, score, n)
        for (month, d, s, k, score), n in h.ratings.items()
        if month == "2026-03"
    )
    assert march_only.total.all.count == 0 and march_only.total.all.average is None
    assert march_only.departments == [] and march_only.staff == []


def test_a_ticket_nobody_answered_is_rated_for_its_department_only() -> None:
    h = History.opened()
    assert h.at(10).rate(3) == [RatingDelta("2026-03", "d-1", NOBODY, "ticket", 3, 1)]
    report = ratings_report(h.rating_rows())
    assert [d.department_id for d in report.departments] == ["d-1"]
    assert report.staff == []


def test_the_first_message_of_a_thread_staff_began_is_rated_for_its_sender() -> None:
    h = History.opened(origin="client_message")
    assert h.at(10).rate(5, "first") == [
        RatingDelta("2026-03", NO_DEPARTMENT, "alice", "message", 5, 1)
    ]
    assert h.at(20).rate(4) == [RatingDelta("2026-03", NO_DEPARTMENT, "alice", "ticket", 4, 1)]


# ---------------------------------------------------------------- state


def test_the_track_survives_its_json() -> None:
    h = History.opened()
    first = h.at(10).reply(ALICE)
    h.at(20).reply(CLIENT)
    h.at(25).rate(3, first)
    again = TicketTrack.from_json("t-1", h.track.to_json())
    assert again == h.track
    assert again.pending == 1 and again.pending_ms == epoch_ms(T0 + timedelta(seconds=20))
    assert again.authors == {first: ("alice", "d-1")}
