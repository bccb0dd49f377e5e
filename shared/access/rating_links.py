"""Signed, single-use links that rate a ticket (or one reply) without logging in.

The notifier puts one in each rating request it mails; the tickets service
serves the page behind it (``GET /rate/{token}``) and records the rating
(``POST /rate/{token}``). Rules kept here and there:

* the token is an EdDSA JWT signed with the issuing service's own key (the
  notifier's ``SERVICE_SIGNING_KEY``; ``iss`` names it) and verified by tickets
  with that service's public key: no secret is shared, and only the services
  tickets lists as issuers (``ISSUERS``) can make one. It is for the audience
  ``rating`` only (it is never a login, nor a service token: both refuse that
  audience), naming the client, the ticket and the reply (none: the whole
  ticket), with an id (``jti``) and an expiry;
* it is made when the mail is sent, never stored in an event or a topic (the
  notice keeps only the placeholder ``%rating_link%``);
* it rates once: the ticket records the link's id with the rating and refuses
  it a second time (``services.tickets.domain.ticket``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.access.control import ALGORITHM, TokenError
from shared.access.keys import ServiceKeys

AUDIENCE = "rating"
LIFETIME = timedelta(days=30)
PLACEHOLDER = "%rating_link%"
# The services whose links tickets honours: the notifier mails them.
ISSUERS = frozenset({"notifier"})


@dataclass(frozen=True)
class RatingLink:
    link_id: str
    client_id: str
    ticket_id: str
    message_id: str | None


def issue(
    key: Ed25519PrivateKey, issuer: str, link: RatingLink, *, now: datetime | None = None
) -> str:
    """A link's token, signed with ``issuer``'s own key ``key``."""
    issued = now or datetime.now(UTC)
    claims = {
        "iss": issuer,
        "aud": AUDIENCE,
        "jti": link.link_id,
        "sub": link.client_id,
        "tkt": link.ticket_id,
        "msg": link.message_id,
        "iat": int(issued.timestamp()),
        "exp": int((issued + LIFETIME).timestamp()),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(keys: ServiceKeys, token: str) -> RatingLink:
    """What the link rates, or ``TokenError`` (forged, expired, not a rating link)."""
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        key = keys.key_of(issuer) if issuer in ISSUERS else None
        if key is None:
            raise TokenError("not issued by a service tickets honours")
        raw = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=issuer,
            options={"require": ["jti", "sub", "exp", "aud", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(type(exc).__name__) from None
    if not raw.get("tkt"):
        raise TokenError("no ticket")
    message = raw.get("msg")
    return RatingLink(
        str(raw["jti"]), str(raw["sub"]), str(raw["tkt"]), str(message) if message else None
    )
