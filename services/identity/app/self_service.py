"""Self-service passwords: a forgotten password is replaced through a single-use link.

Rules kept here:

* ``request`` answers nothing to its caller (the route answers 202 before it
  runs), so whether a login exists cannot be told from the answer or its
  timing; an unknown, disabled or removed principal gets nothing; a principal
  that asked less than ``COOLDOWN`` ago gets nothing new (no mail bombing).
* A reset is a row of ``password_resets`` (who, until when, used when) and a
  ``PasswordResetRequested`` event; neither holds the token. The token is
  ``<reset id>.<HMAC of the id>`` under a key derived from identity's secret:
  identity can hand the same link to the notifier again (a mail sent again)
  without keeping it, and nobody without the key can make one.
* The link works once (the row is marked used in one conditional update, so
  two concurrent uses cannot both win) and until ``expires_at``; a bad token
  is 400 ``reset_token_invalid``, a used one 410 ``reset_token_used``, an
  expired one 410 ``reset_token_expired``. The new password follows the rules
  of every password (422 naming ``new_password``, checked before the link is
  spent), and setting it ends every session of the principal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Column, MetaData, String, Table, and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.identity.app.clients import ClientPrincipals
from services.identity.app.credentials import check_password
from services.identity.app.handlers import Identity, staff_stream
from services.identity.domain.client_principal import ClientPrincipal, client_principal_stream
from services.identity.domain.events import PasswordResetRequested, PasswordResetUsed, registry
from services.identity.domain.staff import Staff
from shared.access.delegation import Grantor
from shared.application.commands import append, load
from shared.domain.events import Actor
from shared.eventstore import StreamState
from shared.readmodel.database import UtcDateTime

log = structlog.get_logger(__name__)

# A principal gets at most one new link in this time (the older one still works).
COOLDOWN = timedelta(seconds=60)

metadata = MetaData()

password_resets = Table(
    "password_resets",
    metadata,
    Column("reset_id", String(36), primary_key=True),
    Column("principal_id", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("requested_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("used_at", UtcDateTime(), nullable=True),
)


class ResetRefused(Exception):
    """A reset token that sets nothing: ``status`` 400 or 410 with a code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def reset_stream(reset_id: str) -> str:
    return f"password-reset-{reset_id}"


@dataclass
class PasswordResets:
    identity: Identity
    principals: ClientPrincipals
    url: str  # the page that takes ``?token=`` (the console's /reset)
    lifetime: timedelta
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    async def create_tables(self) -> None:
        await self.identity.db.create_tables(metadata)

    def _mac(self, reset_id: str) -> str:
        key = hashlib.sha256(b"password-reset-key:" + self.identity.secret.encode()).digest()
        digest = hmac.new(key, reset_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def token(self, reset_id: str) -> str:
        return f"{reset_id}.{self._mac(reset_id)}"

    async def request(self, login: str) -> None:
        """Make a link for ``login`` when it names a principal that may log in (see module)."""
        identity = self.identity
        found = await identity.credentials.find(login)
        if found is None:
            return
        principal_id, kind = found.principal_id, found.kind
        if kind == "client":
            client = await load(
                identity.store, registry, client_principal_stream(principal_id), ClientPrincipal
            )
            active = client.may_log_in
        else:
            staff = await load(identity.store, registry, staff_stream(principal_id), Staff)
            active = staff.exists and not staff.disabled
        if not active:
            return
        now = self.clock()
        reset_id = str(uuid.uuid4())
        async with identity.db.transaction() as conn:
            if await self._recent(conn, principal_id, now):
                return
            # The row first: the event must never name a reset the link route does not know.
            await conn.execute(
                password_resets.insert().values(
                    reset_id=reset_id,
                    principal_id=principal_id,
                    kind=kind,
                    requested_at=now,
                    expires_at=now + self.lifetime,
                )
            )
        requested = PasswordResetRequested(
            reset_id=reset_id,
            principal_id=principal_id,
            kind="client" if kind == "client" else "staff",
            expires_at=now + self.lifetime,
        )
        actor = Actor(id=principal_id, kind="client" if kind == "client" else "staff")
        await append(identity.store, registry, reset_stream(reset_id), [requested], 0, actor=actor)
        log.info("security.password_reset_requested", reset_id=reset_id, principal_id=principal_id)

    async def _recent(self, conn: AsyncConnection, principal_id: str, now: datetime) -> bool:
        row = (
            await conn.execute(
                select(password_resets.c.reset_id).where(
                    password_resets.c.principal_id == principal_id,
                    password_resets.c.used_at.is_(None),
                    password_resets.c.requested_at > now - COOLDOWN,
                )
            )
        ).first()
        return row is not None

    async def link(self, reset_id: str) -> tuple[str, datetime] | None:
        """The link of a reset that still works, and until when; None otherwise."""
        async with self.identity.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(password_resets.c.expires_at, password_resets.c.used_at).where(
                        password_resets.c.reset_id == reset_id
                    )
                )
            ).first()
        if row is None or row.used_at is not None or row.expires_at <= self.clock():
            return None
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}token={self.token(reset_id)}", row.expires_at

    async def complete(self, token: str, new_password: str) -> None:
        """Set the new password with a token (see module): once, before it expires."""
        reset_id, _, mac = token.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(reset_id)):
            raise ResetRefused(400, "reset_token_invalid", "this link is not a valid reset link")
        check_password(new_password, "new_password")
        now = self.clock()
        async with self.identity.db.transaction() as conn:
            spent = await conn.execute(
                password_resets.update()
                .where(
                    and_(
                        password_resets.c.reset_id == reset_id,
                        password_resets.c.used_at.is_(None),
                        password_resets.c.expires_at > now,
                    )
                )
                .values(used_at=now)
            )
            row = (
                await conn.execute(
                    select(password_resets.c.principal_id, password_resets.c.kind).where(
                        password_resets.c.reset_id == reset_id
                    )
                )
            ).first()
        if row is None:
            raise ResetRefused(400, "reset_token_invalid", "this link is not a valid reset link")
        if not spent.rowcount:
            await self._refuse_spent(reset_id)
        principal_id, kind = str(row.principal_id), str(row.kind)
        actor = Actor(id=principal_id, kind="client" if kind == "client" else "staff")
        await append(
            self.identity.store,
            registry,
            reset_stream(reset_id),
            [PasswordResetUsed(reset_id=reset_id, principal_id=principal_id)],
            0,
            actor=actor,
            expected=StreamState.ANY,  # the request is its one other event
        )
        # Both end every session of the principal (keep nothing: the link is no session).
        if kind == "client":
            await self.principals.change_password(actor, principal_id, new_password)
        else:
            await self.identity.set_staff_password(
                actor, principal_id, new_password, Grantor(id=principal_id)
            )
        log.info("security.password_reset_used", reset_id=reset_id, principal_id=principal_id)

    async def _refuse_spent(self, reset_id: str) -> None:
        async with self.identity.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(password_resets.c.used_at).where(password_resets.c.reset_id == reset_id)
                )
            ).first()
        if row is not None and row.used_at is not None:
            raise ResetRefused(410, "reset_token_used", "this link was used already")
        raise ResetRefused(410, "reset_token_expired", "this link has expired; ask for a new one")
