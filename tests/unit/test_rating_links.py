"""Rating links: signed by the notifier's own key for the rating audience only, expiring,
and used up by one rating."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.tickets.domain.ticket import Author, Ticket
from shared.access import ServiceKeys, TokenError, rating_links, verify_token
from shared.domain import Conflict
from shared.domain.events import Actor

NOTIFIER = Ed25519PrivateKey.generate()
TICKETS = Ed25519PrivateKey.generate()
LINK = rating_links.RatingLink("link-1", "c-1", "t-1", "m-1")
# What tickets knows: the public keys of the services that may call it or sign for it.
KNOWN = ServiceKeys({"notifier": NOTIFIER.public_key(), "tickets": TICKETS.public_key()})


def test_a_link_names_what_it_rates_and_nothing_else_accepts_it() -> None:
    token = rating_links.issue(NOTIFIER, "notifier", LINK)
    assert rating_links.verify(KNOWN, token) == LINK
    forged = [
        rating_links.issue(Ed25519PrivateKey.generate(), "notifier", LINK),  # not its key
        rating_links.issue(TICKETS, "tickets", LINK),  # a service that issues no links
        rating_links.issue(TICKETS, "notifier", LINK),  # another's key, the notifier's name
        jwt.encode({"aud": "rating", "jti": "l", "sub": "c", "tkt": "t", "exp": 2**40}, "s" * 48),
    ]
    for token_ in forged:
        with pytest.raises(TokenError):
            rating_links.verify(KNOWN, token_)
    with pytest.raises(TokenError):
        verify_token(NOTIFIER.public_key(), token)  # never a login
    old = rating_links.issue(NOTIFIER, "notifier", LINK, now=datetime.now(UTC) - timedelta(days=31))
    with pytest.raises(TokenError):
        rating_links.verify(KNOWN, old)


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
