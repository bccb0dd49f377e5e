"""The tickets application layer: load a ticket, check who may do what, decide, append.

* Opening (``open_ticket``): the department must be one offered to the
  client (available in the support center and shown for the client's
  project), the category one of that department; a blocking announcement
  refuses clients (409 ``blocked_by_announcement``); a department that
  charges, or a paid category, takes one paid request from the catalogue
  first (402 ``no_paid_requests`` when none is left), and gives it back if
  the ticket could not be written. A client or department created a moment
  ago is waited for, a bounded time, until this service's copy knows it
  (``shared.application.waiting``): "not a department" means it is not there.
* Every other command loads the ticket, answers 404 when the caller may not
  see it (``visibility``), checks the caller's right or ownership (403), and
  with ``expected_version`` refuses to write over a change the caller has
  not seen (409 ``ticket_changed`` listing the changes).
* Facts of other contexts: ``ClientMessaged`` opens a thread (idempotent: the
  ticket id and the event id derive from the message), ``AbuseNoticeExpired``
  with ``move_to_active`` makes that thread wait for staff, ``ClientErased``
  destroys the client's key here, and the notifier's ``DeadlineExpired``
  closes silent tickets and asks for ratings.

* Contacts (``open_for_contact``, ``post_from_contact``, ``link_to_client``):
  mail from an address that is no client's opens a ticket from a contact in
  the department of the address it was sent to (a support department that does
  not charge; a blocking announcement refuses it as it refuses clients); the
  same address may continue it by mail; staff with ``tickets.transfer`` (the
  right that decides whose queue and hands a ticket is in) link it to a known
  client, who sees it from then on. Erasing that client destroys the contact's
  key as well: the ticket's earlier texts are sealed with it.

* Files: uploaded first (``upload``, the kernel's ``shared.readmodel.attachments``
  checks type, size and the scanner), then named by a message or an opening;
  only their uploader may name them. A message's files are downloaded under
  the message's visibility (``attachment``); erasure deletes them.

Ticket texts are sealed with a per-client key of this service (``shared.privacy.shredding``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import orjson
import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.tickets.app import visibility
from services.tickets.app.numbering import TicketNumbering
from services.tickets.app.ports import ActiveAnnouncement, CatalogPort, SupportSettings
from services.tickets.copies import access_history, support
from services.tickets.domain.events import TICKET_EVENTS, registry
from services.tickets.domain.ticket import Author, Ticket, stream_name, thread_id
from services.tickets.projections.queue import ticket_contacts, ticket_entries, tickets
from shared.access.control import Access, Principal
from shared.access.rating_links import RatingLink
from shared.application.commands import CommandAnswer, append, decide_and_append
from shared.application.waiting import until_known
from shared.domain.aggregate import Conflict, DomainError, NotFound
from shared.domain.attachments import AttachmentRecord
from shared.domain.business_hours import expected_response_at
from shared.domain.events import Actor, DomainEvent, RecordedEvent
from shared.eventstore import ConcurrencyError, EventStore, StreamState
from shared.privacy.shredding import KeyRing, Sealer, SubjectErased
from shared.readmodel.attachments import AttachmentStore, StoredAttachment
from shared.readmodel.database import ReadModelDB

log = structlog.get_logger(__name__)

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:provider-backoffice:tickets")


def _both_known(opening: support.Opening) -> bool:
    """Do tickets' copies know the client and the department an opening names?"""
    return opening.client is not None and opening.department is not None


class NotAllowed(Exception):
    """The caller sees the ticket but may not do this (→ 403)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class PeoplePort(Protocol):
    """Who a client is, read synchronously from the clients service (never stored here)."""

    async def contact_person(self, client_id: str, authorization: str | None) -> str | None: ...


@dataclass(frozen=True)
class OpenDraft:
    """``POST /tickets`` as the application layer takes it."""

    department_id: str
    subject: str
    body: str
    category_id: str | None = None
    client_id: str | None = None  # staff opening on behalf of a client
    attachment_ids: tuple[str, ...] = ()
    ticket_id: str | None = None  # derived from what asked for it (a mail): a retry finds it


@dataclass(frozen=True)
class Known:
    """What an open reads before it decides, as its caller has just read it (the mail
    gateway reads it for a group of mails in a few statements): not read again."""

    opening: support.Opening  # the client, the department and its hours
    blocking: ActiveAnnouncement | None  # the blocking announcement active when read


@dataclass(frozen=True)
class ContactDraft:
    """A ticket from a contact (an unknown sender's mail), as the mail gateway asks for it."""

    contact_id: str  # ``domain.ticket.contact_id`` of the mail
    email: str
    name: str | None
    department_id: str
    subject: str
    body: str
    ticket_id: str
    attachment_ids: tuple[str, ...] = ()  # kept by the gateway, uploaded by the contact


@dataclass(frozen=True)
class MessageAnswer:
    id: str
    version: int
    position: int
    message_id: str
    number: int | None = None


def _derived(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(parts)))


@dataclass
class Tickets:
    """The tickets application service: every ticket command goes through here."""

    store: EventStore
    db: ReadModelDB
    catalog: CatalogPort
    keys: KeyRing
    # The staff member's access as this service knows it (None: unknown).
    staff: Callable[[str], Access | None]
    # Business hours a department promises a first response in.
    response_hours: float = 4.0
    people: PeoplePort | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    files: AttachmentStore | None = None

    def __post_init__(self) -> None:
        self.sealer = Sealer(registry, self.keys)
        self.numbering = TicketNumbering(self.store)

    async def start(self) -> None:
        await self.keys.create_tables()
        await self.db.create_tables(support.metadata)
        await self.db.create_tables(access_history.metadata)
        await self.numbering.start()
        if self.files is not None:
            await self.files.create_tables()

    # ---------------------------------------------------------------- opening

    async def _opening(self, client_id: str, department_id: str) -> support.Opening:
        """The client and department a draft names, as this service's copies know them.

        Both come from other contexts' topics: one created a moment ago is
        waited for (bounded, ``until_known``), so it is "not a department"
        (422) only when it really is not there.
        """

        async def read() -> support.Opening:
            async with self.db.reading() as conn:
                return await support.opening(conn, client_id, department_id)

        return await until_known(read, _both_known)

    async def open_ticket(
        self, principal: Principal, draft: OpenDraft, known: Known | None = None
    ) -> MessageAnswer:
        """``known``: the client, department, hours and blocking announcement of this
        draft as its caller has just read them (the mail gateway), not read again."""
        if principal.kind == "client":
            if draft.client_id not in (None, principal.id):
                raise DomainError("client_id", "a client opens tickets for themself")
            client_id = principal.id
        else:
            if not principal.access.has("tickets.reply"):
                raise NotAllowed("the right 'tickets.reply' is required to open a ticket")
            if not draft.client_id:
                raise DomainError("client_id", "staff name the client they open a ticket for")
            client_id = draft.client_id
        now = self.clock()
        if known is None:
            async with self.db.reading() as conn:  # one connection on the usual path
                opening = await support.opening(conn, client_id, draft.department_id)
                blocking = (  # staff open tickets whatever is announced
                    await self.catalog.blocking_announcement(now, conn)
                    if principal.kind == "client"
                    else None
                )
            if not _both_known(opening):  # created a moment ago: wait for the copies
                opening = await self._opening(client_id, draft.department_id)
            known = Known(opening, blocking)
        client, department, hours = (
            known.opening.client,
            known.opening.department,
            known.opening.hours,
        )
        blocking = known.blocking if principal.kind == "client" else None
        if principal.kind == "staff" and (client is None or client.erased):
            raise DomainError("client_id", f"no client {client_id}")
        project_id = client.project_id if client else None
        if department is None or not department.open_for_support:
            raise DomainError("department_id", "not a department of the support center")
        if not department.serves(project_id):
            raise DomainError("department_id", "this department does not serve the client")
        paid = department.charge_requests
        if draft.category_id is not None:
            category = await self.catalog.category(draft.category_id)
            if category is None:
                raise DomainError("category_id", f"no category {draft.category_id}")
            if category.department_id != department.department_id:
                raise DomainError("category_id", "the category belongs to another department")
            if category.project_id is not None and category.project_id != project_id:
                raise DomainError("category_id", "the category is not for the client's project")
            paid = paid or category.paid
        files = await self._named_files(principal, draft.attachment_ids)
        ticket_id = draft.ticket_id or str(uuid.uuid4())
        draft_events = Ticket.open(  # input checked before a number is taken
            ticket_id,
            client_id=client_id,
            company_id=client.company_id if client else None,
            project_id=project_id,
            department_id=department.department_id,
            category_id=draft.category_id,
            subject=draft.subject,
            body=draft.body,
            paid=paid,
            origin="client" if principal.kind == "client" else "staff",
            due_at=expected_response_at(hours, now, self.response_hours),
            files=files,
        )
        if blocking is not None:
            raise Conflict(
                "blocked_by_announcement",
                f"new tickets are not accepted now: {blocking.text}",
            )
        actor = principal.actor
        if paid:
            await self.catalog.take_paid_request(client_id, ticket_id, actor)
        number: int | None = None
        try:
            number = await self.numbering.take(ticket_id)
            events = [e.model_copy(update={"number": number}) for e in draft_events]
            result = await append(
                self.store, registry, stream_name(ticket_id), events, 0,
                actor=actor, sealer=self.sealer,
            )  # fmt: skip
        except BaseException:
            if number is not None:
                await self.numbering.give_back(number, ticket_id)
            if paid:
                await self.catalog.return_paid_request(client_id, ticket_id, actor)
            raise
        assert result is not None
        log.info(
            "tickets.opened",
            ticket_id=ticket_id,
            number=number,
            department_id=department.department_id,
        )
        opened = events[0]
        return MessageAnswer(
            ticket_id, result.stream_version, result.position, _first(opened), number
        )

    async def open_for_contact(self, draft: ContactDraft) -> MessageAnswer:
        """A ticket from a contact in the department of the address it wrote to."""
        now = self.clock()
        async with self.db.reading() as conn:
            department = await support.department(conn, draft.department_id)
            hours = await support.hours_of(conn, draft.department_id)
            blocking = await self.catalog.blocking_announcement(now, conn)
        if department is None or not department.open_for_support:
            raise DomainError("department_id", "not a department of the support center")
        if department.charge_requests:
            # A contact has no paid requests to take one from.
            raise DomainError("department_id", "this department takes requests from clients only")
        files = await self._uploaded_by(draft.contact_id, draft.attachment_ids)
        draft_events = Ticket.open(
            draft.ticket_id,
            client_id=draft.contact_id,
            department_id=department.department_id,
            subject=draft.subject,
            body=draft.body,
            origin="contact",
            due_at=expected_response_at(hours, now, self.response_hours),
            files=files,
            contact_email=draft.email,
            contact_name=draft.name,
        )
        if blocking is not None:
            raise Conflict(
                "blocked_by_announcement", f"new tickets are not accepted now: {blocking.text}"
            )
        actor = Actor(id=draft.contact_id, kind="client")
        number = await self.numbering.take(draft.ticket_id)
        try:
            events = [e.model_copy(update={"number": number}) for e in draft_events]
            result = await append(
                self.store, registry, stream_name(draft.ticket_id), events, 0,
                actor=actor, sealer=self.sealer,
            )  # fmt: skip
        except BaseException:
            await self.numbering.give_back(number, draft.ticket_id)
            raise
        assert result is not None
        log.info("tickets.opened_by_contact", ticket_id=draft.ticket_id, number=number)
        return MessageAnswer(
            draft.ticket_id, result.stream_version, result.position, _first(events[0]), number
        )

    async def post_from_contact(
        self,
        ticket_id: str,
        sender: str,
        body: str,
        attachment_ids: tuple[str, ...] = (),
        *,
        message_id: str,
    ) -> MessageAnswer:
        """A contact's mail continues the ticket it opened (the address must be the one
        that opened it; otherwise 404, as if there were no such ticket)."""
        ticket = await self.load(ticket_id)
        if not ticket.exists or ticket.contact_id is None or ticket.contact_email != sender:
            raise NotFound(f"ticket {ticket_id}")
        contact = ticket.contact_id
        files = await self._uploaded_by(contact, attachment_ids)

        async def decide(ticket: Ticket) -> list[DomainEvent]:
            if message_id in ticket.messages:
                return []  # posted by an earlier attempt
            due = await self._due(ticket.department_id, self.clock())
            return ticket.post(
                Author("client", contact), body, message_id=message_id, due_at=due, files=files
            )

        answer = await decide_and_append(
            self.store,
            registry,
            stream_name(ticket_id),
            Ticket,
            decide,
            answer_id=ticket_id,
            actor=Actor(id=contact, kind="client"),
            sealer=self.sealer,
            loader=lambda: self.load(ticket_id),
        )
        return MessageAnswer(answer.id, answer.version, answer.position, message_id)

    async def link_to_client(
        self, principal: Principal, ticket_id: str, client_id: str, seen: int | None
    ) -> CommandAnswer:
        """Hand a contact's ticket to a client this service knows (422 on ``client_id``
        otherwise); 409 ``already_linked`` / ``not_from_a_contact`` (``domain.ticket``)."""
        self._staff_right(principal, "tickets.transfer")
        async with self.db.reading() as conn:
            client = await support.client(conn, client_id)
        if client is None or client.erased:
            raise DomainError("client_id", f"no client {client_id}")

        async def decide(ticket: Ticket) -> list[DomainEvent]:
            return ticket.link_to_client(client_id, client.company_id, client.project_id)

        return await self._command(principal, ticket_id, seen, decide)

    # ---------------------------------------------------------------- conversation

    async def post_message(
        self,
        principal: Principal,
        ticket_id: str,
        body: str,
        internal: bool,
        seen: int | None,
        attachment_ids: tuple[str, ...] = (),
        *,
        message_id: str | None = None,
    ) -> MessageAnswer:
        """``message_id``: derived from what asked for the message (a mail), so a retry
        that finds it posted writes nothing."""
        if principal.kind == "staff":
            right = "tickets.internal_note" if internal else "tickets.reply"
            if not principal.access.has(right):
                raise NotAllowed(f"the right {right!r} is required")
        elif internal:
            raise NotAllowed("clients cannot write internal notes", field="internal")
        message_id = message_id or str(uuid.uuid4())
        settings = await self.catalog.settings() if principal.kind == "staff" else None
        files = await self._named_files(principal, attachment_ids)

        async def decide(ticket: Ticket) -> list[DomainEvent]:
            now = self.clock()
            if message_id in ticket.messages:
                return []  # posted by an earlier attempt
            if principal.kind == "client":
                self._must_own(principal, ticket, "reply")
                due = await self._due(ticket.department_id, now)
                return ticket.post(Author("client", principal.id), body, message_id=message_id,
                                   due_at=due, files=files)  # fmt: skip
            assert settings is not None
            return ticket.post(
                Author("staff", principal.id),
                body,
                internal=internal,
                message_id=message_id,
                close_due_at=_after(now, settings.close_after_days),
                rating_due_at=_after(now, settings.rate_after_days)
                if settings.rating_mode == "message"
                else None,
                files=files,
            )

        answer = await self._command(principal, ticket_id, seen, decide)
        return MessageAnswer(answer.id, answer.version, answer.position, message_id)

    async def assign(
        self, principal: Principal, ticket_id: str, staff_id: str | None, seen: int | None
    ) -> CommandAnswer:
        self._staff_right(principal, "tickets.assign")

        async def decide(ticket: Ticket) -> list[DomainEvent]:
            if staff_id is not None:
                self._check_staff(staff_id, ticket.department_id, "staff_id")
            return ticket.assign(staff_id)

        return await self._command(principal, ticket_id, seen, decide)

    async def transfer(
        self,
        principal: Principal,
        ticket_id: str,
        department_id: str | None,
        staff_id: str | None,
        seen: int | None,
    ) -> CommandAnswer:
        self._staff_right(principal, "tickets.transfer")
        if department_id is None and staff_id is None:
            raise DomainError("department_id", "name a department_id and/or a staff_id")
        if department_id is not None:

            async def read() -> support.SupportDepartment | None:
                async with self.db.engine.connect() as conn:
                    return await support.department(conn, department_id)

            # One created a moment ago is waited for, as at opening.
            department = await until_known(read, lambda found: found is not None)
            if department is None or not department.open_for_support:
                raise DomainError("department_id", "not a department of the support center")
        settings = await self.catalog.settings()

        async def decide(ticket: Ticket) -> list[DomainEvent]:
            target = department_id if department_id is not None else ticket.department_id
            if staff_id is not None:
                self._check_staff(staff_id, target, "staff_id")
            due = None
            if department_id is not None and ticket.waiting_since is not None:
                # The client has waited since then; the new department's hours count.
                due = await self._due(department_id, ticket.waiting_since)
            return ticket.transfer(
                department_id=department_id,
                staff_id=staff_id,
                notices_shown=settings.transfer_notices_shown,
                due_at=due,
            )

        return await self._command(principal, ticket_id, seen, decide)

    async def close(self, principal: Principal, ticket_id: str, seen: int | None) -> CommandAnswer:
        if principal.kind == "staff":
            self._staff_right(principal, "tickets.close")
        settings = await self.catalog.settings()

        async def decide(ticket: Ticket) -> list[DomainEvent]:
            if principal.kind == "client":
                self._must_own(principal, ticket, "close")
            rating_due = (
                _after(self.clock(), settings.rate_after_days)
                if settings.rating_mode == "ticket"
                else None
            )
            reason: Literal["client", "staff"] = "client" if principal.kind == "client" else "staff"
            return ticket.close(reason, rating_due)

        return await self._command(principal, ticket_id, seen, decide)

    async def reopen(self, principal: Principal, ticket_id: str, seen: int | None) -> CommandAnswer:
        if principal.kind == "staff":
            self._staff_right(principal, "tickets.reopen")

        async def decide(ticket: Ticket) -> list[DomainEvent]:
            if principal.kind == "client":
                self._must_own(principal, ticket, "reopen")
                if ticket.replies_forbidden:
                    raise Conflict("replies_forbidden", "replies to this message are not allowed")
            due = await self._due(ticket.department_id, self.clock())
            return ticket.reopen("client" if principal.kind == "client" else "staff", due)

        return await self._command(principal, ticket_id, seen, decide)

    async def rate(
        self,
        principal: Principal,
        ticket_id: str,
        score: int,
        message_id: str | None,
        comment: str,
    ) -> CommandAnswer:
        if principal.kind != "client":
            raise NotAllowed("only the client rates a ticket")

        async def decide(ticket: Ticket) -> list[DomainEvent]:
            self._must_own(principal, ticket, "rate")
            return ticket.rate(score, message_id, comment)

        return await self._command(principal, ticket_id, None, decide)

    async def rate_by_link(self, link: RatingLink, score: int) -> CommandAnswer:
        """A rating through a mailed link: no login, the link names client, ticket and reply,
        and rates once (409 ``link_used``)."""

        def decide(ticket: Ticket) -> list[DomainEvent]:
            if not ticket.exists or ticket.client_id != link.client_id:
                raise NotFound(f"ticket {link.ticket_id}")
            return ticket.rate(score, link.message_id, "", link.link_id)

        return await decide_and_append(
            self.store,
            registry,
            stream_name(link.ticket_id),
            Ticket,
            decide,
            answer_id=link.ticket_id,
            actor=Actor(id=link.client_id, kind="client"),
            sealer=self.sealer,
            loader=lambda: self.load(link.ticket_id),
        )

    async def autofill(
        self, principal: Principal, ticket_id: str, template_id: str, authorization: str | None
    ) -> tuple[str, str]:
        """A response template rendered for this ticket: (subject, body).

        Macros: ``%ticket_id%``, ``%ticket_subject%``, ``%department%``,
        ``%admin_name%`` (the caller), ``%client_person%`` (from the clients
        service, if the caller may read the client; empty otherwise).
        """
        self._staff_right(principal, "tickets.reply")
        ticket = await self.load(ticket_id)
        if not ticket.exists or not await self.may_see(principal, ticket):
            raise NotFound(f"ticket {ticket_id}")
        async with self.db.engine.connect() as conn:
            admin = await support.staff_name(conn, principal.id) or principal.access.login
            department = (
                await support.department(conn, ticket.department_id)
                if ticket.department_id
                else None
            )
        person = None
        if self.people is not None:
            person = await self.people.contact_person(ticket.client_id, authorization)
        values = {
            "ticket_id": ticket_id,
            "ticket_subject": ticket.subject or "",
            "department": department.name_en if department else "",
            "admin_name": admin,
            "client_person": person or "",
        }
        return await self.catalog.render_template(template_id, values)

    # ---------------------------------------------------------------- files

    def _file_store(self) -> AttachmentStore:
        if self.files is None:
            raise DomainError("attachments", "this service takes no files")
        return self.files

    async def upload(
        self, principal: Principal, data: bytes, filename: str | None
    ) -> StoredAttachment:
        """Keep a file for a message the caller will write (clients, staff who may reply)."""
        if principal.kind == "staff" and not (
            principal.access.has("tickets.reply") or principal.access.has("tickets.internal_note")
        ):
            raise NotAllowed("the right 'tickets.reply' is required to attach files")
        return await self._file_store().put(data, filename, principal.id)

    async def _named_files(
        self, principal: Principal, attachment_ids: tuple[str, ...]
    ) -> list[tuple[AttachmentRecord, str]]:
        """The files a message names: uploaded, and by the caller."""
        return await self._uploaded_by(principal.id, attachment_ids)

    async def _uploaded_by(
        self, uploader: str, attachment_ids: tuple[str, ...]
    ) -> list[tuple[AttachmentRecord, str]]:
        if not attachment_ids:
            return []
        uploaded = await self._file_store().uploaded(attachment_ids, "attachments")
        for stored in uploaded:
            if stored.uploaded_by != uploader:
                raise DomainError(
                    "attachments", f"no attachment {stored.record.attachment_id}"
                )  # as if unknown: another's upload is none of the caller's business
        return [(stored.record, stored.filename) for stored in uploaded]

    async def attachment(
        self, principal: Principal, ticket_id: str, attachment_id: str
    ) -> tuple[str | None, str, bytes]:
        """(file name, content type, bytes) of a file of the ticket, if the caller may see
        the ticket and the message it came with (an internal note's: staff only)."""
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(select(tickets).where(tickets.c.ticket_id == ticket_id))
            ).first()
            owner = await support.client(conn, row.client_id) if row is not None else None
            entries = list(
                await conn.execute(
                    select(ticket_entries.c.attachments, ticket_entries.c.visible_to_client).where(
                        ticket_entries.c.ticket_id == ticket_id,
                        ticket_entries.c.attachments.is_not(None),
                    )
                )
            )
        if row is None:
            raise NotFound(f"ticket {ticket_id}")
        if principal.kind == "staff":
            if not principal.access.has(visibility.VIEW):
                raise NotAllowed(f"the right {visibility.VIEW!r} is required")
            seen = visibility.staff_may_see(principal, row.department_id, row.assignee_id)
        else:
            seen = visibility.client_may_see(
                principal, row.client_id, owner.company_id if owner else None
            )
        if not seen:
            raise NotFound(f"ticket {ticket_id}")
        for entry in entries:
            if principal.kind == "client" and not entry.visible_to_client:
                continue
            for file in orjson.loads(entry.attachments):
                if file["attachment_id"] == attachment_id:
                    found = await self._file_store().content(attachment_id)
                    if found is None:
                        break  # erased
                    record, _, data = found
                    return file.get("filename"), record.content_type, data
        raise NotFound(f"attachment {attachment_id}")

    # ---------------------------------------------------------------- helpers

    async def load(self, ticket_id: str, until: datetime | None = None) -> Ticket:
        """The ticket as its stream says (texts opened; None once the client was erased);
        with ``until``, as it was then (only the events that happened by that moment)."""
        recorded = [
            e
            for e in await self.store.read_stream(stream_name(ticket_id))
            if e.type in TICKET_EVENTS and (until is None or e.occurred_at <= until)
        ]
        keys = await self.sealer.keys_for(recorded)
        ticket = Ticket.replayed(
            (self.sealer.open_with(e, keys), e.occurred_at, e.actor) for e in recorded
        )
        ticket.version = recorded[-1].stream_version if recorded else 0
        return ticket

    async def may_see(self, principal: Principal, ticket: Ticket) -> bool:
        if principal.kind == "staff":
            return visibility.staff_may_see(principal, ticket.department_id, ticket.assignee_id)
        if ticket.client_id == principal.id:
            return True
        async with self.db.engine.connect() as conn:
            owner = await support.client(conn, ticket.client_id)
        return visibility.client_may_see(
            principal, ticket.client_id, owner.company_id if owner else None
        )

    async def _command(
        self,
        principal: Principal,
        ticket_id: str,
        seen: int | None,
        decide: Callable[[Ticket], Awaitable[list[DomainEvent]]],
    ) -> CommandAnswer:
        """Load, check visibility and the version seen, decide, append; again on a race."""
        viewer: Literal["client", "staff"] = "client" if principal.kind == "client" else "staff"

        async def checked_decision(ticket: Ticket) -> list[DomainEvent]:
            if not ticket.exists or not await self.may_see(principal, ticket):
                raise NotFound(f"ticket {ticket_id}")
            # Someone else wrote since ``seen``: the next round says what (409 with changes).
            ticket.check_version(seen, viewer)
            return await decide(ticket)

        try:
            return await decide_and_append(
                self.store,
                registry,
                stream_name(ticket_id),
                Ticket,
                checked_decision,
                answer_id=ticket_id,
                actor=principal.actor,
                sealer=self.sealer,
                loader=lambda: self.load(ticket_id),
            )
        except SubjectErased:
            raise Conflict("client_erased", "the client of this ticket was erased") from None

    def _must_own(self, principal: Principal, ticket: Ticket, what: str) -> None:
        if ticket.client_id != principal.id:
            raise NotAllowed(f"only the ticket's client may {what} it")

    def _staff_right(self, principal: Principal, right: str) -> None:
        if principal.kind != "staff":
            raise NotAllowed("only staff may do this")
        if not principal.access.has(right):
            raise NotAllowed(f"the right {right!r} is required")

    def _check_staff(self, staff_id: str, department_id: str | None, field: str) -> None:
        """A staff member who can take a ticket of ``department_id``."""
        access = self.staff(staff_id)
        if access is None or access.kind != "staff" or access.disabled:
            raise DomainError(field, f"no active staff member {staff_id}")
        if not access.has(visibility.VIEW):
            raise DomainError(field, "that staff member may not view tickets")
        if (
            department_id is not None
            and department_id not in access.departments
            and not access.has(visibility.ALL_DEPARTMENTS)
        ):
            raise DomainError(field, "that staff member is not in the ticket's department")

    async def _due(self, department_id: str | None, since: datetime) -> datetime:
        """When a response is expected for a request made at ``since``."""
        async with self.db.engine.connect() as conn:
            hours = await support.hours_of(conn, department_id)
        return expected_response_at(hours, since, self.response_hours)

    async def settings(self) -> SupportSettings:
        return await self.catalog.settings()

    # ---------------------------------------------------------------- other contexts

    async def on_departments_event(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        await support.on_departments_event(conn, event)

    async def on_identity_event(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        """Staff names, and the history of access facts (who could see a ticket when)."""
        await support.on_identity_event(conn, event)
        await access_history.record(conn, event)

    async def on_clients_event(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        """Clients' facts: the directory, threads of messages, abuse notices, erasure."""
        await support.on_clients_fact(conn, event)
        if event.type == "ClientMessaged":
            await self._open_thread(conn, event)
        elif event.type == "AbuseNoticeExpired" and event.data.get("action") == "move_to_active":
            await self._activate_thread(event)
        elif event.type == "ClientErased":
            await self._forget(conn, str(event.data.get("client_id", "")))

    async def _open_thread(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        data = event.data
        client_id, message_ref = str(data.get("client_id", "")), str(data.get("message_id", ""))
        if not client_id or not message_ref:
            log.warning("tickets.message_without_ids", event_id=str(event.event_id))
            return
        client = await support.client(conn, client_id)
        ticket_id = thread_id(client_id, message_ref)
        if await self.store.stream_version(stream_name(ticket_id)):
            return  # opened by an earlier delivery of the same message
        assignee = data.get("assign_replies_to")
        number = await self.numbering.take(ticket_id)
        [opened] = Ticket.open(
            ticket_id,
            client_id=client_id,
            company_id=client.company_id if client else None,
            project_id=client.project_id if client else None,
            department_id=None,
            category_id=data.get("category_id"),
            subject=None,
            body=None,
            origin="client_message",
            message_ref=message_ref,
            replies_forbidden=bool(data.get("forbid_replies", False)),
            assignee_id=str(assignee) if assignee else None,
            message_id=_derived("thread-message", ticket_id),
            number=number,
        )
        new = registry.encode(
            opened,
            actor=event.actor,
            correlation_id=event.correlation_id,
            causation_id=event.event_id,
            event_id=uuid.uuid5(NAMESPACE, f"opened-by:{event.event_id}"),
        )
        try:
            await self.store.append(stream_name(ticket_id), [new], StreamState.NO_STREAM)
        except BaseException as failed:
            await self.numbering.give_back(number, ticket_id)
            if isinstance(failed, ConcurrencyError):
                return  # opened by an earlier delivery of the same message
            raise
        log.info("tickets.thread_opened", ticket_id=ticket_id, message_id=message_ref)

    async def _activate_thread(self, event: RecordedEvent) -> None:
        client_id = str(event.data.get("client_id", ""))
        message_ref = str(event.data.get("message_id", ""))
        ticket_id = thread_id(client_id, message_ref)

        async def reopen(ticket: Ticket) -> list[DomainEvent]:
            if not ticket.exists:
                log.warning("tickets.notice_without_thread", ticket_id=ticket_id)
                return []
            due = await self._due(ticket.department_id, self.clock())
            return ticket.reopen("notice_expired", due)

        await decide_and_append(
            self.store,
            registry,
            stream_name(ticket_id),
            Ticket,
            reopen,
            answer_id=ticket_id,
            actor=event.actor,
            sealer=self.sealer,
            loader=lambda: self.load(ticket_id),
        )

    async def _forget(self, conn: AsyncConnection, client_id: str) -> None:
        """Erasure: the client's key goes, and the texts already in the read model with it
        (a rebuild would not find them either: the key is gone)."""
        if not client_id:
            return
        await self.keys.destroy_in(conn, client_id)
        owned = select(tickets.c.ticket_id).where(tickets.c.client_id == client_id)
        # Tickets linked to the client from a contact: their first texts are the contact's.
        contacts = await conn.execute(
            select(ticket_contacts.c.contact_id).where(ticket_contacts.c.ticket_id.in_(owned))
        )
        for (contact,) in list(contacts):
            await self.keys.destroy_in(conn, contact)
        await conn.execute(
            update(ticket_contacts)
            .where(ticket_contacts.c.ticket_id.in_(owned))
            .values(email=None, name=None)
        )
        await conn.execute(
            update(tickets).where(tickets.c.client_id == client_id).values(subject=None)
        )
        if self.files is not None:
            files = await conn.execute(
                select(ticket_entries.c.attachments).where(
                    ticket_entries.c.ticket_id.in_(owned), ticket_entries.c.attachments.is_not(None)
                )
            )
            ids = [f["attachment_id"] for (text,) in files for f in orjson.loads(text)]
            if ids:
                table = self.files.table
                await conn.execute(delete(table).where(table.c.attachment_id.in_(ids)))
        await conn.execute(
            update(ticket_entries)
            .where(ticket_entries.c.ticket_id.in_(owned))
            .values(body=None, attachments=None)
        )

    async def on_notifier_event(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        """``DeadlineExpired`` of a ticket: close it if the client stayed silent, or ask
        for a rating. Both decide on the ticket's state, so redelivery writes nothing."""
        if event.type != "DeadlineExpired":
            return
        kind = event.data.get("kind")
        if kind not in ("ticket_auto_close", "rating_request"):
            return
        ticket_id = str(event.data.get("ticket_id", ""))
        if not ticket_id:
            log.warning("tickets.deadline_without_ticket", event_id=str(event.event_id))
            return
        message_id = event.data.get("message_id")

        def act(ticket: Ticket) -> list[DomainEvent]:
            if kind == "ticket_auto_close":
                return ticket.auto_close(self.clock())
            return ticket.request_rating(str(message_id) if message_id else None)

        await decide_and_append(
            self.store,
            registry,
            stream_name(ticket_id),
            Ticket,
            act,
            answer_id=ticket_id,
            actor=Actor(id="notifier", kind="system"),
            sealer=self.sealer,
            loader=lambda: self.load(ticket_id),
        )


def _after(now: datetime, days: int | None) -> datetime | None:
    return None if days is None else now + timedelta(days=days)


def _first(opened: Any) -> str:
    message_id: str = opened.message_id
    return message_id
