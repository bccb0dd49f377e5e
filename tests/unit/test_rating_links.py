"""Rating links: signed for the rating audience only, expiring, and used up by one rating."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.tickets.domain.ticket import Author, Ticket
from shared.access import TokenError, rating_links, verify_token
from shared.domain import Conflict
from shared.domain.events import Actor

SECRET = "rating-link-test-secret-" * 2
LINK = rating_links.RatingLink("link-1", "c-1", "t-1", "m-1")


def test_a_link_names_what_it_rates_and_nothing_else_accepts_it() -> None:
    token = rating_links.issue(SECRET, LINK)
    assert rating_links.verify(SECRET, token) == LINK
    with pytest.raises(TokenError):
        rating_links.verify("another-secret-" * 3, token)
    with pytest.raises(TokenError):
        verify_token(SECRET, token)  # never a login
    old = rating_links.issue(SECRET, LINK, now=datetime.now(UTC) - timedelta(days=31))
    with pytest.raises(TokenError):
        rating_links.verify(SECRET, old)


def test_a_link_rates_once() -> None:
    ticket = Ticket()
    at = datetime(2026, 3, 2, tzinfo=UTC)
    for event in Ticket.open("t-1", client_id="c-1", department_id="d", subject="s", body="b"):
        ticket.apply_at(event, at, Actor("c-1", "client"))
        ticket.version += 1
    [reply] = ticket.post(Author("staff", "s-1"), "done", message_id="m-1")
    ticket.apply_at(reply, at, Actor("s-1", "staff"))
    [rated] = ticket.rate(4, "m-1", "", link_id="link-1")
    ticket.apply_at(rated, at, Actor("c-1", "client"))
    with pytest.raises(Conflict) as used:
        ticket.rate(1, "m-1", "", link_id="link-1")
    assert used.value.code == "link_used"
    assert ticket.rate(5, "m-1")  # signed in, the client may still change it
