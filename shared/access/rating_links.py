"""Signed, single-use links that rate a ticket (or one reply) without logging in.

The notifier puts one in each rating request it mails; the tickets service
serves the page behind it (``GET /rate/{token}``) and records the rating
(``POST /rate/{token}``). Rules kept here and there:

* the token is an HS256 JWT signed with the shared ``JWT_SECRET``, for the
  audience ``rating`` only (it is never a login: ``shared.access`` refuses it),
  naming the client, the ticket and the reply (none: the whole ticket), with an
  id (``jti``) and an expiry;
* it is made when the mail is sent, never stored in an event or a topic (the
  notice keeps only the placeholder ``%rating_link%``);
* it rates once: the ticket records the link's id with the rating and refuses
  it a second time (``services.tickets.domain.ticket``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from shared.access import ALGORITHM, TokenError

AUDIENCE = "rating"
LIFETIME = timedelta(days=30)
PLACEHOLDER = "%rating_link%"


@dataclass(frozen=True)
class RatingLink:
    link_id: str
    client_id: str
    ticket_id: str
    message_id: str | None


def issue(secret: str, link: RatingLink, *, now: datetime | None = None) -> str:
    issued = now or datetime.now(UTC)
    claims = {
        "aud": AUDIENCE,
        "jti": link.link_id,
        "sub": link.client_id,
        "tkt": link.ticket_id,
        "msg": link.message_id,
        "iat": int(issued.timestamp()),
        "exp": int((issued + LIFETIME).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> RatingLink:
    """What the link rates, or ``TokenError`` (forged, expired, not a rating link)."""
    try:
        raw = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["jti", "sub", "exp", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(type(exc).__name__) from None
    if not raw.get("tkt"):
        raise TokenError("no ticket")
    message = raw.get("msg")
    return RatingLink(
        str(raw["jti"]), str(raw["sub"]), str(raw["tkt"]), str(message) if message else None
    )
