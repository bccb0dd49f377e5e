"""What the ticket core needs from the support catalogue (categories, announcements,
settings, paid requests, response templates).

The catalogue (``services.tickets.app.catalog.SupportCatalog``) implements this
Protocol; the ticket handlers only know the Protocol, so either side can be
tested with a stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import Actor


@dataclass(frozen=True)
class CategoryInfo:
    """A ticket category as the opening of a ticket needs it."""

    category_id: str
    department_id: str
    project_id: str | None
    paid: bool
    warning: str
    topic: str


@dataclass(frozen=True)
class SupportSettings:
    """Support-center settings; the defaults hold until someone changes them."""

    transfer_notices_shown: int = 3
    close_after_days: int | None = 7
    rate_after_days: int | None = 1
    rating_mode: Literal["message", "ticket"] = "ticket"
    # Mail from an address that is no client's: a ticket from a contact, or refused.
    unknown_senders: Literal["open", "reject"] = "open"


@dataclass(frozen=True)
class ActiveAnnouncement:
    """An announcement active at the moment asked about."""

    announcement_id: str
    text: str
    blocking: bool
    starts_at: datetime
    ends_at: datetime


class CatalogPort(Protocol):
    async def category(self, category_id: str) -> CategoryInfo | None:
        """The category, or None when unknown (or deleted)."""
        ...

    async def blocking_announcement(
        self, now: datetime, conn: AsyncConnection | None = None
    ) -> ActiveAnnouncement | None:
        """A blocking announcement active at ``now``, if any (read on ``conn``, a
        ``reading()`` connection the caller already holds, when given)."""
        ...

    async def settings(self) -> SupportSettings: ...

    async def paid_balance(self, client_id: str) -> int:
        """How many paid requests the client has left."""
        ...

    async def take_paid_request(self, client_id: str, ticket_id: str, actor: Actor) -> None:
        """Take one paid request for ``ticket_id``; idempotent per ticket.

        Raises ``PaymentRequired("no_paid_requests", ...)`` (``shared.domain``) when none are left.
        """
        ...

    async def return_paid_request(self, client_id: str, ticket_id: str, actor: Actor) -> None:
        """Give back the request taken for ``ticket_id`` (the opening failed)."""
        ...

    async def render_template(self, template_id: str, values: dict[str, str]) -> tuple[str, str]:
        """(subject, body) of the template with its ``%macros%`` filled; NotFound if unknown."""
        ...
