"""Sealed cookie sessions and CSRF tokens.

Rules it keeps:

* The session is a small JSON object sealed with AES-256-GCM (``cryptography``)
  in one cookie: ``HttpOnly`` (no script reads it), ``SameSite=Lax`` (no
  cross-site POST carries it), ``Secure`` behind HTTPS. Nothing is kept on the
  server, so any replica sharing the key serves any session. A cookie that does
  not open (forged, or sealed with another key) counts as no session.
* The access token identity issued is kept there and nowhere else; while a
  staff member is logged in as a client, their own token waits in ``back`` and
  is restored when they return.
* Every session, anonymous ones included, carries a random CSRF token; a form
  posts it back and ``check_csrf`` compares in constant time.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import os
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

COOKIE = "console_session"
# The browser forgets the cookie after this; identity's token usually expires first.
MAX_AGE = 12 * 3600
CSRF_FIELD = "csrf_token"


@dataclass
class Session:
    """What the console remembers about one browser."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token: str | None = None
    kind: str | None = None  # "staff" | "client"
    principal_id: str | None = None
    lang: str | None = None
    # While a staff member is logged in as a client: their own token and where to go back.
    back_token: str | None = None
    back_to: str | None = None
    flash: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.token is not None

    @property
    def impersonating(self) -> bool:
        return self.back_token is not None

    def sign_in(self, token: str, kind: str, principal_id: str) -> None:
        self.token, self.kind, self.principal_id = token, kind, principal_id
        self.csrf = secrets.token_urlsafe(24)  # a new token at every change of who is in

    def sign_out(self) -> None:
        lang = self.lang
        self.__dict__.update(asdict(Session(lang=lang)))


class Sealer:
    """Seals and opens session cookies with one AES-GCM key."""

    def __init__(self, key: bytes) -> None:
        self.aead = AESGCM(key)

    def seal(self, session: Session) -> str:
        nonce = os.urandom(12)
        plain = orjson.dumps({k: v for k, v in asdict(session).items() if v is not None})
        sealed = self.aead.encrypt(nonce, plain, COOKIE.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, cookie: str | None) -> Session:
        """The cookie's session, or a new one when it does not open."""
        return self.opened(cookie) or Session()

    def opened(self, cookie: str | None) -> Session | None:
        """The cookie's session, or None when there is no cookie or it does not open."""
        if not cookie:
            return None
        with contextlib.suppress(ValueError, InvalidTag, TypeError):
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            plain = self.aead.decrypt(raw[:12], raw[12:], COOKIE.encode())
            values: dict[str, Any] = orjson.loads(plain)
            known = {k: v for k, v in values.items() if k in Session.__dataclass_fields__}
            return Session(**known)
        return None


def check_csrf(session: Session, sent: object) -> bool:
    """Whether a form's CSRF token is the session's."""
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), session.csrf.encode())
