"""Events of the support catalogue: categories, paid requests, templates, announcements, settings.

Registered into the tickets context's ``registry`` and published on
``tickets.events`` like the rest of it. Streams:

* ``ticket-category-<id>``: a ticket category (topic, department, project,
  free or paid, the warning shown to the client, sort value);
* ``paid-requests-<client_id>``: a client's balance of paid requests. Every
  event carries ``balance``, the balance after it, so a consumer needs no
  history to show it;
* ``ticket-template-<id>``: a response template with ``%macros%``;
* ``announcement-<id>``: an announcement with its window; a blocking one
  stops new tickets while it is active;
* ``support-settings``: the support center's settings. ``SupportSettingsChanged``
  carries the whole settings as they are after the change (and ``changed``),
  so the notifier only needs the last one.

Changes of categories and templates carry what changed: ``changed`` lists the
fields set, every other optional field is None ("unchanged"), since None is
itself a value for some fields (a category's project).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import model_validator

from services.tickets.domain.events import registry
from shared.domain.events import DomainEvent, check_changed
from shared.domain.events import LocalizedText as LocalizedText  # the kernel owns it

CategoryField = Literal["topic", "department_id", "project_id", "paid", "warning", "sort"]
TemplateField = Literal["name", "subject", "body"]
SettingsField = Literal[
    "transfer_notices_shown",
    "close_after_days",
    "rate_after_days",
    "rating_mode",
    "unknown_senders",
]
RatingMode = Literal["message", "ticket"]
UnknownSenders = Literal["open", "reject"]


# ---------------------------------------------------------------- categories


@registry.register
class TicketCategoryCreated(DomainEvent):
    event_type = "TicketCategoryCreated"
    category_id: str
    topic: LocalizedText
    department_id: str
    project_id: str | None
    paid: bool
    warning: str
    sort: int


@registry.register
class TicketCategoryChanged(DomainEvent):
    """Only the fields in ``changed`` are set; the others are None and mean unchanged."""

    event_type = "TicketCategoryChanged"
    category_id: str
    changed: list[CategoryField]
    topic: LocalizedText | None = None
    department_id: str | None = None
    project_id: str | None = None
    paid: bool | None = None
    warning: str | None = None
    sort: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_changed(self, "category_id", list(self.changed), {"project_id"}, require_some=True)
        return self


@registry.register
class TicketCategoryDeleted(DomainEvent):
    """The category is gone: new tickets cannot name it (existing ones keep their id)."""

    event_type = "TicketCategoryDeleted"
    category_id: str


# ---------------------------------------------------------------- paid requests


@registry.register
class PaidRequestsCredited(DomainEvent):
    """Staff gave the client ``amount`` paid requests (bought or granted)."""

    event_type = "PaidRequestsCredited"
    client_id: str
    amount: int
    comment: str
    balance: int


@registry.register
class PaidRequestTaken(DomainEvent):
    """Opening ``ticket_id`` in a paid category or a charging department used one request."""

    event_type = "PaidRequestTaken"
    client_id: str
    ticket_id: str
    balance: int


@registry.register
class PaidRequestReturned(DomainEvent):
    """The request taken for ``ticket_id`` came back (the ticket was not opened after all)."""

    event_type = "PaidRequestReturned"
    client_id: str
    ticket_id: str
    balance: int


# ---------------------------------------------------------------- response templates


@registry.register
class ResponseTemplateCreated(DomainEvent):
    event_type = "ResponseTemplateCreated"
    template_id: str
    name: str
    subject: str
    body: str


@registry.register
class ResponseTemplateChanged(DomainEvent):
    """Only the fields in ``changed`` are set; the others are None and mean unchanged."""

    event_type = "ResponseTemplateChanged"
    template_id: str
    changed: list[TemplateField]
    name: str | None = None
    subject: str | None = None
    body: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_changed(self, "template_id", list(self.changed), set(), require_some=True)
        return self


@registry.register
class ResponseTemplateDeleted(DomainEvent):
    event_type = "ResponseTemplateDeleted"
    template_id: str


# ---------------------------------------------------------------- announcements


@registry.register
class AnnouncementPublished(DomainEvent):
    """Shown to clients from ``starts_at`` (inclusive) until ``ends_at`` (exclusive).

    ``text`` is kept as staff gave it: one string, or ``{"en", "ru"}``.
    While a ``blocking`` one is active, opening a ticket answers 409
    ``blocked_by_announcement``.
    """

    event_type = "AnnouncementPublished"
    announcement_id: str
    text: LocalizedText | str
    starts_at: datetime
    ends_at: datetime
    blocking: bool


@registry.register
class AnnouncementEnded(DomainEvent):
    """Staff ended it early: it is active until ``ended_at`` (before ``ends_at``) at most."""

    event_type = "AnnouncementEnded"
    announcement_id: str
    ended_at: datetime


# ---------------------------------------------------------------- settings


@registry.register
class SupportSettingsChanged(DomainEvent):
    """The support center's settings, whole, after a change; ``changed`` names what changed.

    The notifier's timers follow it: ``close_after_days`` (None: never close
    for inactivity), ``rate_after_days`` (None: never ask for a rating; 0: at
    once) and ``rating_mode`` (rate each staff ``message`` or the whole ``ticket``).
    ``transfer_notices_shown``: how many transfer notices a client sees per ticket.
    ``unknown_senders``: what the mail gateway does with mail from an address that is
    no client's: ``open`` a ticket from a contact, or ``reject`` it with a notice
    (absent from changes made before it existed: ``open``).
    """

    event_type = "SupportSettingsChanged"
    changed: list[SettingsField]
    transfer_notices_shown: int
    close_after_days: int | None
    rate_after_days: int | None
    rating_mode: RatingMode
    unknown_senders: UnknownSenders = "open"


CATEGORY_EVENTS = frozenset(
    {"TicketCategoryCreated", "TicketCategoryChanged", "TicketCategoryDeleted"}
)
PAID_REQUEST_EVENTS = frozenset({"PaidRequestsCredited", "PaidRequestTaken", "PaidRequestReturned"})
TEMPLATE_EVENTS = frozenset(
    {"ResponseTemplateCreated", "ResponseTemplateChanged", "ResponseTemplateDeleted"}
)
ANNOUNCEMENT_EVENTS = frozenset({"AnnouncementPublished", "AnnouncementEnded"})
SETTINGS_EVENTS = frozenset({"SupportSettingsChanged"})
CATALOG_EVENTS: frozenset[str] = (
    CATEGORY_EVENTS | PAID_REQUEST_EVENTS | TEMPLATE_EVENTS | ANNOUNCEMENT_EVENTS | SETTINGS_EVENTS
)
"""Every event type of the catalogue (what its read model reads)."""
