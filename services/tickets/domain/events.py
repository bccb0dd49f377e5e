"""Events of the tickets context, published on ``tickets.events``.

Streams of the ticket core: ``ticket-<id>``, one per ticket (or per thread a
message to a client opened). The support catalogue (categories, paid requests,
templates, announcements, settings) registers its events into the same
``registry`` from ``catalog_events``.

What the notifier needs is in the facts themselves, so it never has to know
the support settings or the business hours:

* ``due_at`` (on ``TicketOpened``, on a client's ``TicketMessagePosted`` that
  makes the ticket wait, on ``TicketTransferred``): when a response is
  expected, by the department's schedule (SLA warnings);
* ``close_due_at`` (on a staff reply): when the ticket closes by itself if the
  client does not answer; the notifier fires ``DeadlineExpired`` with kind
  ``ticket_auto_close`` then, and this service closes it if nothing happened since;
* ``rating_due_at`` (on a staff reply in per-message rating mode, on
  ``TicketClosed`` in per-ticket mode): when to ask the client for a rating;
  ``DeadlineExpired`` with kind ``rating_request`` makes ``TicketRatingRequested``.

Message texts of tickets opened by a message to a client (``origin`` =
``client_message``) are not here: that text is the client's personal data,
sealed in the clients context, so the thread refers to it by ``message_ref``
and readers get it from the clients API (``GET /clients/{id}/messages``).

A ticket opened by mail from an address that is no client's (``origin`` =
``contact``) belongs to a *contact* until staff link it to a client: its
``client_id`` is then the contact's id (``contact-<uuid>``, never a client's),
whose own key seals the texts and the contact's address and name
(``contact_email``, ``contact_name``), so a contact can be forgotten like a
client. ``TicketLinkedToClient`` hands the ticket to a client: from then on its
events carry that client's id (and are sealed with that client's key).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from shared.domain.attachments import AttachmentRecord
from shared.domain.events import DomainEvent, EventRegistry

registry = EventRegistry()

Origin = Literal["client", "staff", "client_message", "contact"]
AuthorKind = Literal["client", "staff", "system"]
CloseReason = Literal["client", "staff", "auto"]


class TicketEvent(DomainEvent):
    """Base of every event of a ticket stream."""

    ticket_id: str


class _ClientText(TicketEvent):
    """An event with texts of a ticket: sealed with the key of the ticket's client.

    Subjects and messages of a ticket (the staff's replies too: they are about
    the client) are personal data: erasing the client destroys the key in this
    service, and every replay then opens these fields to None (``shared.privacy.shredding``).
    """

    subject_field: ClassVar[str] = "client_id"
    personal_fields: ClassVar[tuple[str, ...]] = ()
    client_id: str


@registry.register
class TicketOpened(_ClientText):
    """A ticket (or a thread opened by a message to a client) begins.

    ``department_id`` is None for a thread of a message to a client: it lives in
    the "messages" queue until someone transfers it to a department.
    ``subject``/``body`` are None there too (see ``message_ref`` and the module
    docstring). ``message_id`` names the first message of the thread.
    """

    event_type = "TicketOpened"
    personal_fields = ("subject", "body", "attachment_names", "contact_email", "contact_name")
    company_id: str | None = None
    project_id: str | None = None
    department_id: str | None
    category_id: str | None = None
    subject: str | None
    body: str | None
    message_id: str
    paid: bool = False
    origin: Origin = "client"
    message_ref: str | None = None  # the clients context's message id (origin client_message)
    replies_forbidden: bool = False
    assignee_id: str | None = None
    # "open": waits for staff; "answered": waits for the client (a thread staff began).
    status: Literal["open", "answered"] = "open"
    due_at: datetime | None = None
    # The short number people say and type (``#1042``); None on tickets opened before numbers.
    number: int | None = None
    # Files of the first message (bytes in this service's database); their names,
    # in the same order, as one sealed JSON text (``shared.domain.attachments.names_text``).
    attachments: list[AttachmentRecord] = []
    attachment_names: str | None = None
    # Origin "contact": who wrote (their address and name, sealed; see the module docstring).
    contact_email: str | None = None
    contact_name: str | None = None


@registry.register
class TicketMessagePosted(_ClientText):
    """A reply of the client or of staff, or an internal note (``internal``: staff only)."""

    event_type = "TicketMessagePosted"
    personal_fields = ("body", "attachment_names")
    message_id: str
    author_kind: AuthorKind
    author_id: str
    body: str | None
    internal: bool = False
    due_at: datetime | None = None  # a client message that makes the ticket wait
    close_due_at: datetime | None = None  # a staff reply: auto-close if the client is silent
    rating_due_at: datetime | None = None  # a staff reply in per-message rating mode
    attachments: list[AttachmentRecord] = []  # see TicketOpened
    attachment_names: str | None = None


@registry.register
class TicketLinkedToClient(TicketEvent):
    """A ticket from a contact now belongs to the client ``client_id`` (who sees it from
    then on); ``contact_id`` is the contact it belonged to (the key of its earlier texts).
    ``company_id``/``project_id``: the client's, as this service knew them."""

    event_type = "TicketLinkedToClient"
    client_id: str
    contact_id: str
    company_id: str | None = None
    project_id: str | None = None


@registry.register
class TicketAssigned(TicketEvent):
    """The ticket's assignee within its department is now ``assignee_id`` (None: nobody)."""

    event_type = "TicketAssigned"
    assignee_id: str | None
    previous_id: str | None = None


@registry.register
class TicketTransferred(TicketEvent):
    """Moved to another department and/or staff member.

    ``notice_visible_to_client``: whether the client is shown this transfer;
    the client sees at most ``transfer_notices_shown`` (a support setting) per ticket.
    """

    event_type = "TicketTransferred"
    from_department_id: str | None
    to_department_id: str | None
    from_staff_id: str | None
    to_staff_id: str | None
    notice_visible_to_client: bool
    due_at: datetime | None = None  # by the new department's schedule, while the ticket waits


@registry.register
class TicketClosed(TicketEvent):
    event_type = "TicketClosed"
    reason: CloseReason
    rating_due_at: datetime | None = None  # per-ticket rating mode


@registry.register
class TicketReopened(TicketEvent):
    """Open again: by staff, by the client, by the client's reply to a closed ticket,
    or because an abuse notice expired without a reaction (``notice_expired``)."""

    event_type = "TicketReopened"
    reason: Literal["staff", "client", "client_reply", "notice_expired"]
    due_at: datetime | None = None


@registry.register
class TicketRated(_ClientText):
    """The client rated a staff reply (``message_id``) or the whole ticket (None), 1 to 5.

    A later rating of the same reply (or of the ticket) replaces the earlier one.
    """

    event_type = "TicketRated"
    personal_fields = ("comment",)
    score: int
    message_id: str | None = None
    comment: str | None = ""
    link_id: str | None = None  # rated through a mailed link (``rating_links``): used up


@registry.register
class TicketRatingRequested(TicketEvent):
    """The client is asked to rate a reply (``message_id``) or the ticket (None)."""

    event_type = "TicketRatingRequested"
    message_id: str | None = None


TICKET_EVENTS: frozenset[str] = frozenset(
    model.event_type
    for model in (
        TicketOpened,
        TicketMessagePosted,
        TicketLinkedToClient,
        TicketAssigned,
        TicketTransferred,
        TicketClosed,
        TicketReopened,
        TicketRated,
        TicketRatingRequested,
    )
)
"""Every event type of a ticket stream."""


from services.tickets.domain import catalog_events, numbers  # noqa: E402, F401
