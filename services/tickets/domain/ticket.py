"""The ticket aggregate (stream ``ticket-<id>``): a conversation between a client and support.

Status:

* ``open`` – waits for staff (a new ticket, a client's reply, a reopening);
* ``answered`` – waits for the client (staff replied, or staff began the
  thread with a message to the client);
* ``closed`` – by the client, by staff, or by itself after the client stayed
  silent (``auto``).

Rules decided here, without I/O (the application layer brings the time, the
support settings and the expected-response moments it computed from the
department's schedule):

* a client may not reply when the thread forbids replies (409 ``replies_forbidden``);
* a client's reply to a closed ticket reopens it (``TicketReopened`` with
  reason ``client_reply``, then the message); staff must reopen a closed
  ticket before replying (409 ``ticket_closed``); internal notes may be added
  to a closed ticket and change nothing else;
* internal notes never reach the client (the read side filters them, and so
  does the list of changes below);
* a transfer notice is shown to the client only while fewer than
  ``transfer_notices_shown`` were shown before;
* a message (the first one too) carries at most ``MAX_ATTACHMENTS`` files,
  an internal note's files are staff-only like the note;
* a ticket from a contact (``origin`` ``contact``, an unknown sender's mail)
  belongs to that contact (``client_id`` is the contact's id) until it is
  linked to a client, once: linking it again to the same client writes
  nothing, to another client is 409 ``already_linked``, and a client's own
  ticket is 409 ``not_from_a_contact``; the contact keeps writing to it by
  mail after the link (as the client's side of the conversation);
* collision safety: a command may name the version its author saw; if the
  ticket moved on since, ``TicketChanged`` (409 ``ticket_changed``) lists what
  happened after that version instead of writing anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from services.tickets.domain.events import (
    TICKET_EVENTS,
    AuthorKind,
    CloseReason,
    Origin,
    TicketAssigned,
    TicketClosed,
    TicketLinkedToClient,
    TicketMessagePosted,
    TicketOpened,
    TicketRated,
    TicketRatingRequested,
    TicketReopened,
    TicketTransferred,
)
from shared.domain.aggregate import Aggregate, Conflict, DomainError, NotFound
from shared.domain.attachments import AttachmentRecord, names_text
from shared.domain.events import SYSTEM, Actor, DomainEvent

Status = Literal["open", "answered", "closed"]

MAX_SUBJECT = 200
MAX_BODY = 20_000
MAX_COMMENT = 2_000
MAX_ATTACHMENTS = 10
MAX_EMAIL = 320
CONTACT_PREFIX = "contact-"

Files = Sequence[tuple[AttachmentRecord, str]]
"""Files of a message: each record with its file name."""
# A deadline that fires a little early (clocks of two services) still counts.
DEADLINE_TOLERANCE = timedelta(seconds=5)


def stream_name(ticket_id: str) -> str:
    return f"ticket-{ticket_id}"


def thread_id(client_id: str, message_ref: str) -> str:
    """The ticket id of the thread a message to a client opens: the same for every redelivery."""
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"urn:tickets:client-message:{message_ref}:{client_id}")
    )


def contact_id(key: str) -> str:
    """The id of the contact who opened a ticket by the mail ``key`` names (its Message-ID):
    a contact per ticket, so the id says nothing about the address."""
    return CONTACT_PREFIX + str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:tickets:contact:{key}"))


def is_contact(subject_id: str) -> bool:
    return subject_id.startswith(CONTACT_PREFIX)


def _files(files: Files) -> dict[str, Any]:
    """The event fields of a message's files; ``DomainError`` on ``attachments`` beyond the cap."""
    if len(files) > MAX_ATTACHMENTS:
        raise DomainError("attachments", f"at most {MAX_ATTACHMENTS} files a message")
    return {
        "attachments": [record for record, _ in files],
        "attachment_names": names_text([name for _, name in files]),
    }


def check_text(value: str | None, field_name: str, longest: int) -> str:
    """A required text, stripped; ``DomainError`` naming the field otherwise."""
    clean = (value or "").strip()
    if not clean:
        raise DomainError(field_name, "must not be empty")
    if len(clean) > longest:
        raise DomainError(field_name, f"at most {longest} characters")
    return clean


@dataclass(frozen=True)
class Author:
    """Who writes: the client of the ticket, or a staff member."""

    kind: AuthorKind
    id: str


_TIMELINE_KINDS: dict[type[DomainEvent], str] = {
    TicketOpened: "opened",
    TicketAssigned: "assigned",
    TicketTransferred: "transfer",
    TicketClosed: "closed",
    TicketReopened: "reopened",
    TicketRated: "rated",
    TicketRatingRequested: "rating_requested",
    TicketLinkedToClient: "linked_to_client",
}


def timeline_kind(event: DomainEvent) -> str:
    """The entry an event makes in its ticket's timeline (the queue's ``type``)."""
    # By exact class (event models are final): a rebuild asks this of every event, and
    # ``isinstance`` on a pydantic model class goes through ABCMeta's Python-level check.
    if event.__class__ is TicketMessagePosted:
        return "internal_note" if event.internal else "message"
    return _TIMELINE_KINDS.get(type(event), event.event_type)


def seen_by_client(event: DomainEvent) -> bool:
    """Whether the ticket's client sees this entry of its timeline.

    The one rule for the 409 ``ticket_changed`` list and the queue's timeline:
    internal notes, assignments and links to a client are for staff; a transfer only while its
    notice is shown (the configured cap of transfer notices).
    """
    kind = event.__class__  # exact classes, as in ``timeline_kind``
    if kind is TicketMessagePosted:
        return not cast(TicketMessagePosted, event).internal
    if kind is TicketAssigned or kind is TicketLinkedToClient:
        return False
    if kind is TicketTransferred:
        return cast(TicketTransferred, event).notice_visible_to_client
    return True


@dataclass(frozen=True)
class Change:
    """One event of the ticket's history, as the 409 ``ticket_changed`` lists it."""

    version: int
    type: str
    at: datetime | None
    actor: Actor
    details: dict[str, Any]
    visible_to_client: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "type": self.type,
            "at": self.at.isoformat() if self.at else None,
            "actor": self.actor.to_dict(),
            **self.details,
        }


class TicketChanged(Conflict):
    """The ticket moved on since the version the caller saw (→ 409 ``ticket_changed``)."""

    def __init__(self, ticket_id: str, seen: int, current: int, changes: list[Change]) -> None:
        super().__init__(
            "ticket_changed",
            f"ticket {ticket_id} changed since version {seen} (now {current}); "
            "read what changed and try again",
        )
        self.seen = seen
        self.current = current
        self.changes = changes


@dataclass
class PostedMessage:
    author_kind: AuthorKind
    author_id: str
    internal: bool


@dataclass
class Ticket(Aggregate):
    """A ticket rebuilt from its stream; ``replayed`` also keeps its history for collisions."""

    id: str = ""
    number: int | None = None
    client_id: str = ""
    company_id: str | None = None
    project_id: str | None = None
    department_id: str | None = None
    category_id: str | None = None
    subject: str | None = None
    origin: Origin = "client"
    replies_forbidden: bool = False
    status: Status = "open"
    assignee_id: str | None = None
    paid: bool = False
    waiting_since: datetime | None = None
    due_at: datetime | None = None
    close_due_at: datetime | None = None
    last_activity_at: datetime | None = None
    transfer_notices_shown: int = 0
    messages: dict[str, PostedMessage] = field(default_factory=dict)
    rated: set[str | None] = field(default_factory=set)
    rating_requested: set[str | None] = field(default_factory=set)
    used_links: set[str] = field(default_factory=set)
    # A ticket from a contact: the contact's id, address and name (kept after a link).
    contact_id: str | None = None
    contact_email: str | None = None
    contact_name: str | None = None
    history: list[Change] = field(default_factory=list)

    handles = TICKET_EVENTS

    def __post_init__(self) -> None:
        super().__init__()

    @property
    def exists(self) -> bool:
        return bool(self.id)

    # ---------------------------------------------------------------- commands

    @staticmethod
    def open(
        ticket_id: str,
        *,
        client_id: str,
        department_id: str | None,
        subject: str | None,
        body: str | None,
        company_id: str | None = None,
        project_id: str | None = None,
        category_id: str | None = None,
        paid: bool = False,
        origin: Origin = "client",
        message_ref: str | None = None,
        replies_forbidden: bool = False,
        assignee_id: str | None = None,
        due_at: datetime | None = None,
        message_id: str | None = None,
        number: int | None = None,
        files: Files = (),
        contact_email: str | None = None,
        contact_name: str | None = None,
    ) -> list[DomainEvent]:
        """A new ticket; a thread of a message to a client has no texts of its own;
        one from a contact (``origin`` ``contact``) names the contact's address."""
        if origin == "contact":
            if not client_id.startswith(CONTACT_PREFIX):
                raise DomainError("client_id", "a contact's ticket belongs to a contact id")
            contact_email = check_text(contact_email, "contact_email", MAX_EMAIL)
            contact_name = (contact_name or "").strip()[:MAX_SUBJECT] or None
        else:
            contact_email = contact_name = None
        if origin == "client_message":
            if not message_ref:
                raise DomainError("message_ref", "a thread of a message names that message")
            clean_subject, clean_body = None, None
        else:
            clean_subject = check_text(subject, "subject", MAX_SUBJECT)
            clean_body = check_text(body, "body", MAX_BODY)
        return [
            TicketOpened(
                ticket_id=ticket_id,
                client_id=client_id,
                company_id=company_id,
                project_id=project_id,
                department_id=department_id,
                category_id=category_id,
                subject=clean_subject,
                body=clean_body,
                message_id=message_id or str(uuid.uuid4()),
                paid=paid,
                origin=origin,
                message_ref=message_ref,
                replies_forbidden=replies_forbidden,
                assignee_id=assignee_id,
                # Staff wrote first: the thread waits for the client.
                status="answered" if origin == "client_message" else "open",
                due_at=None if origin == "client_message" else due_at,
                number=number,
                contact_email=contact_email,
                contact_name=contact_name,
                **_files(files),
            )
        ]

    def link_to_client(
        self, client_id: str, company_id: str | None, project_id: str | None
    ) -> list[DomainEvent]:
        """Hand a contact's ticket to a client (see the module docstring for the rules)."""
        self._must_exist()
        if self.contact_id is None:
            raise Conflict("not_from_a_contact", "this ticket is a client's, not a contact's")
        if self.client_id == client_id:
            return []
        if self.client_id != self.contact_id:
            raise Conflict("already_linked", f"this ticket is linked to client {self.client_id}")
        return [
            TicketLinkedToClient(
                ticket_id=self.id,
                client_id=client_id,
                contact_id=self.contact_id,
                company_id=company_id,
                project_id=project_id,
            )
        ]

    def post(
        self,
        author: Author,
        body: str,
        *,
        internal: bool = False,
        message_id: str | None = None,
        due_at: datetime | None = None,
        close_due_at: datetime | None = None,
        rating_due_at: datetime | None = None,
        files: Files = (),
    ) -> list[DomainEvent]:
        """A reply or an internal note. ``due_at``: for a client's message that makes it wait;
        ``close_due_at``/``rating_due_at``: for a staff reply (from the settings)."""
        self._must_exist()
        text = check_text(body, "body", MAX_BODY)
        attached = _files(files)
        message_id = message_id or str(uuid.uuid4())
        events: list[DomainEvent] = []
        if author.kind == "client":
            if internal:
                raise DomainError("internal", "clients cannot write internal notes")
            if self.replies_forbidden:
                raise Conflict("replies_forbidden", "replies to this message are not allowed")
            waiting = self.status == "open"
            if self.status == "closed":
                events.append(
                    TicketReopened(ticket_id=self.id, reason="client_reply", due_at=due_at)
                )
            events.append(
                TicketMessagePosted(
                    ticket_id=self.id,
                    client_id=self.client_id,
                    message_id=message_id,
                    author_kind="client",
                    author_id=author.id,
                    body=text,
                    # Already waiting: the deadline of the first unanswered message stays.
                    due_at=None if waiting else due_at,
                    **attached,
                )
            )
            return events
        if internal:
            return [
                TicketMessagePosted(
                    ticket_id=self.id,
                    client_id=self.client_id,
                    message_id=message_id,
                    author_kind=author.kind,
                    author_id=author.id,
                    body=text,
                    internal=True,
                    **attached,
                )
            ]
        if self.status == "closed":
            raise Conflict("ticket_closed", "the ticket is closed; reopen it to reply")
        return [
            TicketMessagePosted(
                ticket_id=self.id,
                client_id=self.client_id,
                message_id=message_id,
                author_kind=author.kind,
                author_id=author.id,
                body=text,
                close_due_at=close_due_at,
                rating_due_at=rating_due_at,
                **attached,
            )
        ]

    def assign(self, assignee_id: str | None) -> list[DomainEvent]:
        self._must_exist()
        if assignee_id == self.assignee_id:
            return []
        return [
            TicketAssigned(ticket_id=self.id, assignee_id=assignee_id, previous_id=self.assignee_id)
        ]

    def transfer(
        self,
        *,
        department_id: str | None,
        staff_id: str | None,
        notices_shown: int,
        due_at: datetime | None = None,
    ) -> list[DomainEvent]:
        """To another department (its queue, nobody assigned unless ``staff_id``)
        and/or another staff member; None keeps that part as it is."""
        self._must_exist()
        if department_id is None and staff_id is None:
            raise DomainError("department_id", "name a department_id and/or a staff_id")
        if self.status == "closed":
            raise Conflict("ticket_closed", "the ticket is closed; reopen it to transfer it")
        to_department = department_id if department_id is not None else self.department_id
        moved = to_department != self.department_id
        to_staff = staff_id if staff_id is not None else (None if moved else self.assignee_id)
        if not moved and to_staff == self.assignee_id:
            return []
        return [
            TicketTransferred(
                ticket_id=self.id,
                from_department_id=self.department_id,
                to_department_id=to_department,
                from_staff_id=self.assignee_id,
                to_staff_id=to_staff,
                notice_visible_to_client=self.transfer_notices_shown < max(0, notices_shown),
                due_at=due_at if moved and self.status == "open" else None,
            )
        ]

    def close(
        self, reason: CloseReason, rating_due_at: datetime | None = None
    ) -> list[DomainEvent]:
        self._must_exist()
        if self.status == "closed":
            return []
        return [TicketClosed(ticket_id=self.id, reason=reason, rating_due_at=rating_due_at)]

    def auto_close(self, now: datetime) -> list[DomainEvent]:
        """Close because the client stayed silent; only if nothing happened since the
        deadline was set (the ticket still waits for the client, by that same deadline)."""
        if not self.exists or self.status != "answered" or self.close_due_at is None:
            return []
        if self.close_due_at > now + DEADLINE_TOLERANCE:
            return []
        return self.close("auto")

    def reopen(
        self,
        reason: Literal["staff", "client", "notice_expired"],
        due_at: datetime | None = None,
    ) -> list[DomainEvent]:
        """Open again (waits for staff). A closed ticket, or, after an expired abuse
        notice, a thread that waited for the client."""
        self._must_exist()
        if self.status == "open":
            return []
        if self.status == "answered" and reason != "notice_expired":
            return []
        return [TicketReopened(ticket_id=self.id, reason=reason, due_at=due_at)]

    def rate(
        self,
        score: int,
        message_id: str | None,
        comment: str = "",
        link_id: str | None = None,
    ) -> list[DomainEvent]:
        """``link_id``: rated through a mailed link, which rates once."""
        self._must_exist()
        if link_id is not None and link_id in self.used_links:
            raise Conflict("link_used", "this rating link was used already")
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            raise DomainError("score", "a whole number from 1 to 5")
        if message_id is not None:
            message = self.messages.get(message_id)
            if message is None or message.author_kind != "staff" or message.internal:
                raise DomainError("message_id", "not a reply of staff in this ticket")
        if len(comment) > MAX_COMMENT:
            raise DomainError("comment", f"at most {MAX_COMMENT} characters")
        return [
            TicketRated(
                ticket_id=self.id,
                client_id=self.client_id,
                score=score,
                message_id=message_id,
                comment=comment,
                link_id=link_id,
            )
        ]

    def request_rating(self, message_id: str | None) -> list[DomainEvent]:
        """Ask for a rating once, and not when it is rated already."""
        if not self.exists or message_id in self.rated or message_id in self.rating_requested:
            return []
        if message_id is not None and message_id not in self.messages:
            return []
        return [TicketRatingRequested(ticket_id=self.id, message_id=message_id)]

    def check_version(self, seen: int | None, viewer: Literal["client", "staff"]) -> None:
        """Collision safety: nothing may have happened since version ``seen``."""
        if seen is None or seen == self.version:
            return
        if seen > self.version:
            raise DomainError("expected_version", f"the ticket is at version {self.version}")
        raise TicketChanged(self.id, seen, self.version, self.changes_since(seen, viewer))

    def changes_since(self, version: int, viewer: Literal["client", "staff"]) -> list[Change]:
        return [
            c
            for c in self.history
            if c.version > version and (viewer == "staff" or c.visible_to_client)
        ]

    def _must_exist(self) -> None:
        if not self.exists:
            raise NotFound("ticket")

    # ---------------------------------------------------------------- state

    def apply(self, event: DomainEvent) -> None:
        self.apply_at(event, None, SYSTEM)

    def apply_at(self, event: DomainEvent, at: datetime | None, actor: Actor) -> None:
        """Change state for one past event that happened at ``at`` (None: unknown)."""
        details: dict[str, Any] = {}
        if isinstance(event, TicketOpened):
            self.id = event.ticket_id
            self.number = event.number
            self.client_id = event.client_id
            self.company_id = event.company_id
            self.project_id = event.project_id
            self.department_id = event.department_id
            self.category_id = event.category_id
            self.subject = event.subject
            self.origin = event.origin
            self.replies_forbidden = event.replies_forbidden
            self.assignee_id = event.assignee_id
            self.paid = event.paid
            self.status = event.status
            self.waiting_since = at if event.status == "open" else None
            self.due_at = event.due_at
            if event.origin == "contact":
                self.contact_id = event.client_id
                self.contact_email = event.contact_email
                self.contact_name = event.contact_name
            author: AuthorKind = "staff" if event.origin == "client_message" else "client"
            self.messages[event.message_id] = PostedMessage(author, actor.id, False)
            details = {"department_id": event.department_id}
        elif isinstance(event, TicketMessagePosted):
            self.messages[event.message_id] = PostedMessage(
                event.author_kind, event.author_id, event.internal
            )
            details = {
                "message_id": event.message_id,
                "author_kind": event.author_kind,
                "author_id": event.author_id,
                "internal": event.internal,
                "body": event.body,
            }
            if not event.internal:
                if event.author_kind == "client":
                    if self.status != "open":
                        self.waiting_since = at
                        self.due_at = event.due_at
                    self.status = "open"
                    self.close_due_at = None
                else:
                    self.status = "answered"
                    self.waiting_since = None
                    self.due_at = None
                    self.close_due_at = event.close_due_at
        elif isinstance(event, TicketLinkedToClient):
            self.client_id = event.client_id
            self.company_id = event.company_id
            self.project_id = event.project_id
            details = {"client_id": event.client_id, "contact_id": event.contact_id}
        elif isinstance(event, TicketAssigned):
            self.assignee_id = event.assignee_id
            details = {"assignee_id": event.assignee_id}
        elif isinstance(event, TicketTransferred):
            self.department_id = event.to_department_id
            self.assignee_id = event.to_staff_id
            if event.due_at is not None:
                self.due_at = event.due_at
            if event.notice_visible_to_client:
                self.transfer_notices_shown += 1
            details = {
                "from_department_id": event.from_department_id,
                "to_department_id": event.to_department_id,
                "from_staff_id": event.from_staff_id,
                "to_staff_id": event.to_staff_id,
            }
        elif isinstance(event, TicketClosed):
            self.status = "closed"
            self.waiting_since = None
            self.due_at = None
            self.close_due_at = None
            details = {"reason": event.reason}
        elif isinstance(event, TicketReopened):
            self.status = "open"
            self.waiting_since = at
            self.due_at = event.due_at
            self.close_due_at = None
            details = {"reason": event.reason}
        elif isinstance(event, TicketRated):
            self.rated.add(event.message_id)
            if event.link_id is not None:
                self.used_links.add(event.link_id)
            details = {"score": event.score, "message_id": event.message_id}
        elif isinstance(event, TicketRatingRequested):
            self.rating_requested.add(event.message_id)
            details = {"message_id": event.message_id}
        else:
            return
        if at is not None and not isinstance(event, TicketRatingRequested):
            self.last_activity_at = at
        self.history.append(
            Change(
                version=self.version + 1,
                type=event.event_type,
                at=at,
                actor=actor,
                details=details,
                visible_to_client=seen_by_client(event),
            )
        )

    @classmethod
    def replayed(cls, events: Iterable[tuple[DomainEvent, datetime | None, Actor]]) -> Ticket:
        """A ticket from its events with when and by whom each happened."""
        ticket = cls()
        for event, at, actor in events:
            ticket.apply_at(event, at, actor)
            ticket.version += 1
        return ticket
