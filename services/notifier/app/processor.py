"""The stream processor's work for a batch of events: remember, decide notices and
deadlines, append.

For each event of the input topics (and of ``notifier.events``, for the
response-time warnings it fired itself; identity's ``PasswordResetRequested``
becomes a mail whose link is asked for when it is sent, never kept here):

1. skip it if the inbox has it (Kafka delivers at least once);
2. decide the notices (who, which channel, what text) and the deadlines it
   sets or cancels, reading the directory as it was before this event;
3. append them: a notice to its own stream that must not exist yet (its id
   is the event id + recipient + channel, so a second decision is refused by
   the store), timer events with ids derived from the event, so re-sending is
   idempotent;
4. apply the event to the directory and record it in the inbox, in one
   transaction.

A crash between 3 and 4 repeats 2 and 3 on redelivery, which appends nothing
new.

A batch (``handle_batch``, what the stream takes at once) keeps those rules and
does the work once per batch where the order allows: one inbox query finds what
was handled before; the batch is cut into *runs* that end with each event that
changes the directory (``directory.changes``) or erases a client, so every event
is still decided on the directory as it was just before it; within a run the
decisions (directory reads, the clients and tickets services) run side by side
(``AT_ONCE``), then the notices and the timers are appended side by side (the
steps of one timer in the events' order), then one transaction applies the run
to the directory and records it in the inbox. ``handle`` is a batch of one. The
notifier's own facts other than ``DeadlineExpired`` are passed over first
(``PASSED_OVER``): they decide nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import select

from services.notifier.app.ports import (
    ClientDirectory,
    Conversations,
    message_files,
    ticket_files,
)
from services.notifier.copies import directory
from services.notifier.domain import deadlines
from services.notifier.domain.deadlines import Cancel, TicketFacts
from services.notifier.domain.delivery import stream_of as notice_stream
from services.notifier.domain.events import ClientNotice, Language, StaffNotice, registry
from services.notifier.domain.notices import (
    ACTIONS,
    ClientCard,
    Conversation,
    Macros,
    Notice,
    client_recipients,
    render,
    reset_recipient,
    staff_recipients,
    ticket_ref,
)
from services.notifier.domain.timer import Deadline, Timer
from services.notifier.domain.timer import stream_of as timer_stream
from shared.application.commands import decide_and_append
from shared.domain.events import Actor, DomainEvent, RecordedEvent
from shared.eventstore import ConcurrencyError, EventStore, StreamState
from shared.observability import causation
from shared.privacy.shredding import KeyRing, Sealer
from shared.readmodel.database import ReadModelDB, inbox

log = structlog.get_logger(__name__)

INBOX = "notifier.stream"
ACTOR = Actor(id="notifier", kind="system")
# Fixed: ids derived from a source event must be the same after every restart.
DERIVED = uuid.UUID("0b7f2c1e-9c44-4c1f-8d0e-5b8a4f6d3e21")


AT_ONCE = 8
"""Decisions, or appends, of one run in flight at once: each holds a read-model or a
store connection (``DB_POOL_SIZE`` each, 10 by default, shared with the postman and
the read models), and the tickets and clients services answer the lookups."""


def derived_id(source: str, purpose: str) -> uuid.UUID:
    return uuid.uuid5(DERIVED, f"{source}/{purpose}")


# The notifier reads its own topic for the response-time warnings it fires
# (``DeadlineExpired``); its other facts (notices queued and sent, timers set,
# subscriptions) decide no notice and change no directory: they are passed over
# without a read or an inbox row (taken again, they are passed over again).
PASSED_OVER = frozenset(registry.models()) - {"DeadlineExpired"}

Decided = tuple[list[Notice], list[Deadline | Cancel]]
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class Processor:
    def __init__(
        self,
        store: EventStore,
        db: ReadModelDB,
        keys: KeyRing,
        clients: ClientDirectory,
        conversations: Conversations,
        warning_lead: timedelta,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.db = db
        self.keys = keys
        self.sealer = Sealer(registry, keys)
        self.clients = clients
        self.conversations = conversations
        self.warning_lead = warning_lead
        self.on_queued = on_queued
        self.handled = 0

    async def start(self) -> None:
        # Columns added to the directory since (a ticket's number) come to an old database.
        await self.db.create_tables(directory.metadata, add_new_columns=True)
        await self.keys.create_tables()

    async def seen(self, event_id: uuid.UUID) -> bool:
        return not await self.unseen_of([event_id])

    async def unseen_of(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``event_ids`` the inbox does not have yet (one query)."""
        wanted = {str(event_id) for event_id in event_ids}
        async with self.db.reading() as conn:
            found = await conn.execute(
                select(inbox.c.event_id).where(
                    inbox.c.consumer == INBOX, inbox.c.event_id.in_(sorted(wanted))
                )
            )
            seen = set(found.scalars())
        return {event_id for event_id in event_ids if str(event_id) not in seen}

    async def handle(self, event: RecordedEvent) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[RecordedEvent]) -> None:
        """Handle ``events`` in their order, each once (rules in the module docstring)."""
        events = [e for e in events if e.type not in PASSED_OVER]
        if not events:
            return
        unseen = await self.unseen_of([e.event_id for e in events])
        fresh: list[RecordedEvent] = []
        for event in events:
            if event.event_id in unseen:  # a copy inside the batch counts once too
                unseen.discard(event.event_id)
                fresh.append(event)
        for run in runs(fresh):
            await self._handle_run(run)

    async def _handle_run(self, run: list[RecordedEvent]) -> None:
        reads = _RUN_READS.set({})  # the run's directory reads, each asked once
        try:
            decided: list[Decided] = await together(
                [_caused(event, functools.partial(self.decide, event)) for event in run], AT_ONCE
            )
        finally:
            _RUN_READS.reset(reads)
        appends: list[Callable[[], Awaitable[None]]] = []
        steps: dict[str, list[tuple[Deadline | Cancel, RecordedEvent]]] = {}
        for event, (notices, plan) in zip(run, decided, strict=True):
            appends += [_caused(event, functools.partial(self.queue, n, event)) for n in notices]
            for step in plan:
                steps.setdefault(step.timer_id, []).append((step, event))
        appends += [functools.partial(self._set_timers, one) for one in steps.values()]
        await together(appends, AT_ONCE)
        if any(notices for notices, _ in decided):
            self.on_queued()
        async with self.db.transaction() as conn:
            for event in run:
                marked = await conn.execute(
                    self.db.insert_ignoring_duplicates(
                        inbox, consumer=INBOX, event_id=str(event.event_id)
                    )
                )
                if marked.rowcount:
                    await directory.apply(conn, event)
                    if event.type == "ClientErased":
                        await self._forget(conn, str(event.data["client_id"]))
        self.handled += len(run)

    async def _set_timers(self, steps: list[tuple[Deadline | Cancel, RecordedEvent]]) -> None:
        """One timer's steps, in the order of the events that set them."""
        for step, event in steps:
            await _caused(event, functools.partial(self.set_timer, step, str(event.event_id)))()

    async def _forget(self, conn: Any, client_id: str) -> None:
        """An erased client: their notices' key goes, and the log's copies of them."""
        from services.notifier.projections import deliveries

        await self.keys.destroy_in(conn, client_id)
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.subject_id == client_id)
            .values(to=None, subject=None, body=None, files=None)
        )

    # ------------------------------------------------------------ deciding

    async def decide(self, event: RecordedEvent) -> tuple[list[Notice], list[Deadline | Cancel]]:
        d = event.data
        async with self.db.reading() as conn:
            ticket = await _once(directory.ticket, conn, d.get("ticket_id"))
            departments = {d.get("department_id"), d.get("to_department_id")}
            if ticket is not None:
                departments.add(ticket.department_id)
            schedules = {
                dep: await _once(directory.schedule_of, conn, dep) for dep in departments if dep
            }

            def warn_at(department_id: str | None, due: datetime) -> datetime:
                schedule = schedules.get(department_id) if department_id else None
                return deadlines.warning_at(schedule, due, self.warning_lead)

            plan = deadlines.plan(event.type, d, ticket, warn_at)
            notices = await self._staff_notices(conn, event, ticket)
        notices += await self._client_notices(event, ticket)
        notices += await self._reset_notices(event)
        return notices, plan

    async def _reset_notices(self, event: RecordedEvent) -> list[Notice]:
        """identity's ``PasswordResetRequested``: a mail to the principal's own address
        whose link identity hands out when it is sent (``Conversation.reset_of``)."""
        if event.type != "PasswordResetRequested":
            return []
        d = event.data
        principal_id, reset_id = str(d["principal_id"]), str(d["reset_id"])
        if d.get("kind") == "client":
            card = await self.clients.card(principal_id)
            if card is None or card.erased:
                log.warning("notifier.client_unknown", client_id=principal_id, reset_id=reset_id)
                return []
            recipients = reset_recipient("client", principal_id, card.email, card.language)
        else:
            async with self.db.reading() as conn:
                found = await _once(directory.staff, conn, (principal_id,))
                chosen = await _once(directory.staff_subscriptions, conn, (principal_id,))
            subscription = chosen.get(principal_id)
            language: Language = subscription.language if subscription else "en"
            email = found[0].email if found and found[0].active else None
            recipients = reset_recipient("staff", principal_id, email, language)
        if not recipients:
            log.info("notifier.password_reset_without_address", reset_id=reset_id)
        conversation = Conversation(reset_of=reset_id)
        return [render("password_reset", r, {}, conversation) for r in recipients]

    async def _staff_notices(
        self, conn: Any, event: RecordedEvent, ticket: TicketFacts | None
    ) -> list[Notice]:
        d = event.data
        kind: StaffNotice
        if (
            event.type == "TicketOpened"
            and d.get("department_id")
            and d.get("origin") != "client_message"
        ):
            kind, candidates = (
                "new_ticket",
                await _once(directory.members, conn, d["department_id"]),
            )
            department_id = d["department_id"]
        elif (
            event.type == "TicketMessagePosted"
            and d.get("author_kind") == "client"
            and not d.get("internal")
            and ticket is not None
            and ticket.assignee_id
        ):
            kind, candidates = (
                "client_reply",
                await _once(directory.staff, conn, (ticket.assignee_id,)),
            )
            department_id = ticket.department_id
        elif event.type == "TicketTransferred" and d.get("to_staff_id"):
            kind, candidates = (
                "ticket_transferred",
                await _once(directory.staff, conn, (d["to_staff_id"],)),
            )
            department_id = d.get("to_department_id") or (ticket.department_id if ticket else None)
        elif event.type == "DeadlineExpired" and d.get("kind") == "response_time":
            if ticket is not None and ticket.assignee_id:
                candidates = await _once(directory.staff, conn, (ticket.assignee_id,))
            else:
                candidates = await _once(directory.members, conn, d.get("department_id"))
            kind, department_id = "deadline_near", d.get("department_id")
        else:
            return []
        subscriptions = await _once(
            directory.staff_subscriptions, conn, tuple(c.staff_id for c in candidates)
        )
        recipients = staff_recipients(kind, candidates, subscriptions, exclude=event.actor.id)
        if not recipients:
            return []
        ticket_id = str(d.get("ticket_id", ""))
        names = await _once(directory.department_name, conn, department_id)
        actor = await _once(directory.staff, conn, (event.actor.id,))
        number = d.get("number")
        if number is None and ticket is not None and ticket.ticket_id == ticket_id:
            number = ticket.number  # from its opening: no call to the tickets service
        if number is None and ticket_id:
            found = await self.conversations.ticket(ticket_id, _position_in(event, "ticket-"))
            number = found.get("number") if found else None
        macros = Macros(
            plain={
                "ticket_id": ticket_id,
                "ticket_ref": ticket_ref(number, ticket_id),
                "deadline": _moment(d.get("response_due_at")),
            },
            by_language={
                lang: {
                    "department": names.get(lang, ""),
                    "admin_name": actor[0].name(lang) if actor else "",
                    "client_person": "",
                }
                for lang in ("en", "ru")
            },
        )
        by_id = {c.staff_id: c for c in candidates}
        return [
            render(
                kind,
                r,
                {
                    **macros.for_language(r.language),
                    "staff_name": by_id[r.recipient_id].name(r.language),
                },
            )
            for r in recipients
        ]

    async def _client_notices(
        self, event: RecordedEvent, ticket: TicketFacts | None
    ) -> list[Notice]:
        """A client's mail carries the conversation: a reply's text and files, a message's
        own subject, text and files, an abuse notice's report, deadline and action, under
        the ticket's number and subject, threaded per ticket (``Conversation``)."""
        d = event.data
        kind: ClientNotice
        staff_id: str | None = None
        deadline = ""
        extra: dict[str, str] = {}
        by_language: dict[Language, dict[str, str]] = {}
        conversation = Conversation()
        message: dict[str, Any] | None = None
        if event.type == "ClientMessaged":
            client_id = str(d["client_id"])
            violation = d.get("violation")
            kind = "abuse_notice" if violation else "client_message"
            if violation:
                deadline = _format(deadlines.parse_datetime(violation["deadline"]))
                action = str(violation.get("on_no_reaction", ""))
                by_language = {
                    lang: {"action": ACTIONS[lang].get(action, action)} for lang in ("en", "ru")
                }
            staff_id = event.actor.id
            message_id = str(d.get("message_id", ""))
            message = await self.conversations.client_message(client_id, message_id, event.position)
            if message is not None:
                extra = {
                    "message_subject": message.get("subject") or "",
                    "message_text": message.get("text") or "",
                }
                conversation = Conversation(
                    thread_id=f"message-{message_id}",
                    files=message_files(client_id, message_id, message.get("attachments", [])),
                )
        elif (
            event.type == "TicketMessagePosted"
            and d.get("author_kind") == "staff"
            and not d.get("internal")
        ):
            client_id, kind, staff_id = str(d["client_id"]), "staff_reply", str(d.get("author_id"))
            ticket_id = str(d.get("ticket_id", ""))
            message = await self.conversations.ticket_message(
                ticket_id, str(d.get("message_id")), event.position
            )
            if message is not None:
                extra = _ticket_macros(ticket_id, message)
                extra["message"] = message.get("body") or ""
                conversation = Conversation(
                    thread_id=f"ticket-{ticket_id}",
                    reply_to=message.get("reply_to"),
                    files=ticket_files(ticket_id, message.get("attachments", [])),
                )
        elif event.type == "TicketRatingRequested" and ticket is not None:
            client_id, kind = ticket.client_id, "rating_request"
            extra, conversation = await self._ticket_conversation(ticket.ticket_id, event)
            rated = d.get("message_id")
            conversation = dataclasses.replace(
                conversation,
                rating_of=f"{ticket.ticket_id}/{rated}" if rated else ticket.ticket_id,
            )
        elif (
            event.type == "TicketTransferred"
            and d.get("notice_visible_to_client")
            and d.get("to_department_id") != d.get("from_department_id")
            and ticket is not None
        ):
            client_id, kind = ticket.client_id, "transfer_notice"
            extra, conversation = await self._ticket_conversation(ticket.ticket_id, event)
            async with self.db.reading() as conn:
                names = await _once(directory.department_name, conn, d.get("to_department_id"))
            by_language = {lang: {"department": names.get(lang, "")} for lang in ("en", "ru")}
        else:
            return []
        contact = message.get("contact") if kind == "staff_reply" and message else None
        if contact:
            # A ticket from a contact (an unknown sender's mail, not yet a client's):
            # the reply goes to the address that wrote, sealed with the contact's key.
            card: ClientCard | None = contact_card(contact)
        else:
            card = await self.clients.card(client_id)
        if card is None:
            log.warning(
                "notifier.client_unknown", client_id=client_id, event_id=str(event.event_id)
            )
            return []
        recipients = client_recipients(kind, card)
        if not recipients:
            return []
        async with self.db.reading() as conn:
            author = await _once(directory.staff, conn, (staff_id,) if staff_id else ())
        return [
            render(
                kind,
                r,
                {
                    **_client_macros(
                        card, author[0].name(r.language) if author else "", d, deadline
                    ),
                    **extra,
                    **by_language.get(r.language, {}),
                },
                conversation,
            )
            for r in recipients
        ]

    async def _ticket_conversation(
        self, ticket_id: str, event: RecordedEvent
    ) -> tuple[dict[str, str], Conversation]:
        found = await self.conversations.ticket(ticket_id, event.position)
        thread = Conversation(thread_id=f"ticket-{ticket_id}")
        if found is None:
            return {"ticket_ref": ticket_ref(None, ticket_id)}, thread
        return _ticket_macros(ticket_id, found), Conversation(
            thread_id=thread.thread_id, reply_to=found.get("reply_to")
        )

    # ------------------------------------------------------------ appending

    async def queue(self, notice: Notice, cause: RecordedEvent) -> None:
        """Append the notice's first event, unless the same notice was queued before."""
        queued = notice.queued(str(cause.event_id), cause.type)
        encoded = registry.encode(
            queued,
            actor=ACTOR,
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
            event_id=derived_id(queued.notice_id, "queued"),
        )
        try:
            await self.store.append(
                notice_stream(queued.notice_id),
                [await self.sealer.seal(encoded)],
                StreamState.NO_STREAM,
            )
        except ConcurrencyError:
            log.info("notifier.notice_already_queued", notice_id=queued.notice_id)

    async def set_timer(self, step: Deadline | Cancel, source_event_id: str) -> None:
        timer_id = step.timer_id
        stream = timer_stream(timer_id)

        def decide(timer: Timer) -> Sequence[DomainEvent]:
            if isinstance(step, Cancel):
                return timer.cancel(timer_id, step.reason, source_event_id)
            return timer.schedule(step, source_event_id)

        # Fired or moved meanwhile: decided again. The ids follow the cause and the
        # version, so the same fact handled twice appends nothing new.
        await decide_and_append(
            self.store,
            registry,
            stream,
            Timer,
            decide,
            answer_id=timer_id,
            actor=ACTOR,
            event_ids=lambda timer, events: [
                derived_id(source_event_id, f"{stream}/{timer.version}") for _ in events
            ],
        )


def runs(events: Sequence[RecordedEvent]) -> Iterator[list[RecordedEvent]]:
    """``events`` cut after each one that changes what later ones are decided on (the
    directory, or an erased client's key): inside a run, every event sees the directory
    as it was just before it."""
    run: list[RecordedEvent] = []
    for event in events:
        run.append(event)
        if directory.changes(event) or event.type == "ClientErased":
            yield run
            run = []
    if run:
        yield run


_RUN_READS: ContextVar[dict[tuple[Any, Hashable], Any] | None] = ContextVar(
    "notifier_run_reads", default=None
)


async def _once(read: Callable[[Any, K], Awaitable[T]], conn: Any, key: K) -> T:
    """``read(conn, key)``, asked once per run: inside a run the directory does not
    change (``runs``), so the events of a batch that name the same department, staff
    or ticket share one answer. Outside a run, simply asked."""
    memo = _RUN_READS.get()
    if memo is None:
        return await read(conn, key)
    if (read, key) not in memo:
        memo[read, key] = await read(conn, key)
    found: T = memo[read, key]
    return found


def _caused(event: RecordedEvent, work: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """``work`` for ``event``: what it appends and logs continues the event's correlation."""

    async def call() -> T:
        with causation.bound(causation.caused_by(event.event_id, event.correlation_id)):
            return await work()

    return call


async def together(calls: Sequence[Callable[[], Awaitable[T]]], at_once: int = 0) -> list[T]:
    """The calls' results, run side by side (``at_once`` at most, 0: no limit); the
    first failure cancels the others and is raised as itself (what the stream's
    retry rules look at), not inside an ``ExceptionGroup``."""
    if len(calls) <= 1:
        return [await call() for call in calls]
    gate = asyncio.Semaphore(at_once or len(calls))

    async def gated(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(gated(call)) for call in calls]
    except ExceptionGroup as failed:
        first = failed.exceptions[0]
        while isinstance(first, ExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


def contact_card(contact: dict[str, Any]) -> ClientCard | None:
    """A contact of a ticket as the recipient of its replies (None once erased)."""
    email = contact.get("email")
    if not email:
        return None
    return ClientCard(
        client_id=str(contact["contact_id"]),
        language="en",
        email=str(email),
        contact_person=contact.get("name") or None,
    )


def _format(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _moment(value: Any) -> str:
    return _format(deadlines.parse_datetime(value)) if value else ""


def _client_macros(
    card: ClientCard, admin_name: str, data: dict[str, Any], deadline: str
) -> dict[str, str]:
    ticket_id = str(data.get("ticket_id", ""))
    return {
        "client_person": card.person,
        "admin_name": admin_name,
        "ticket_id": ticket_id,
        "ticket_ref": ticket_ref(data.get("number"), ticket_id),
        "ticket_subject": "",
        "deadline": deadline,
    }


def _ticket_macros(ticket_id: str, found: dict[str, Any]) -> dict[str, str]:
    """The ticket's number and subject, as the tickets service tells them."""
    return {
        "ticket_ref": ticket_ref(found.get("number"), ticket_id),
        "ticket_subject": found.get("subject") or "",
    }


def _position_in(event: RecordedEvent, prefix: str) -> int:
    """The event's position, when it comes from the store of the service asked (its
    stream names say so); 0 otherwise (a position of another store means nothing there)."""
    return event.position if event.stream.startswith(prefix) else 0
