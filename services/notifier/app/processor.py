"""The stream processor's work for one event: remember, decide notices and deadlines, append.

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
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

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
from shared.privacy.shredding import KeyRing, Sealer
from shared.readmodel.database import ReadModelDB, inbox

log = structlog.get_logger(__name__)

INBOX = "notifier.stream"
ACTOR = Actor(id="notifier", kind="system")
# Fixed: ids derived from a source event must be the same after every restart.
DERIVED = uuid.UUID("0b7f2c1e-9c44-4c1f-8d0e-5b8a4f6d3e21")


def derived_id(source: str, purpose: str) -> uuid.UUID:
    return uuid.uuid5(DERIVED, f"{source}/{purpose}")


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
        await self.db.create_tables(directory.metadata)
        await self.keys.create_tables()

    async def seen(self, event_id: uuid.UUID) -> bool:
        async with self.db.reading() as conn:
            found = await conn.execute(
                select(inbox.c.event_id).where(
                    inbox.c.consumer == INBOX, inbox.c.event_id == str(event_id)
                )
            )
            return found.first() is not None

    async def handle(self, event: RecordedEvent) -> None:
        if await self.seen(event.event_id):
            return
        notices, plan = await self.decide(event)
        for notice in notices:
            await self.queue(notice, event)
        if notices:
            self.on_queued()
        for step in plan:
            await self.set_timer(step, str(event.event_id))
        async with self.db.transaction() as conn:
            marked = await conn.execute(
                self.db.insert_ignoring_duplicates(
                    inbox, consumer=INBOX, event_id=str(event.event_id)
                )
            )
            if marked.rowcount:
                await directory.apply(conn, event)
                if event.type == "ClientErased":
                    await self._forget(conn, str(event.data["client_id"]))
        self.handled += 1

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
            ticket = await directory.ticket(conn, d.get("ticket_id"))
            departments = {d.get("department_id"), d.get("to_department_id")}
            if ticket is not None:
                departments.add(ticket.department_id)
            schedules = {dep: await directory.schedule_of(conn, dep) for dep in departments if dep}

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
                found = await directory.staff(conn, [principal_id])
                chosen = await directory.staff_subscriptions(conn, [principal_id])
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
            kind, candidates = "new_ticket", await directory.members(conn, d["department_id"])
            department_id = d["department_id"]
        elif (
            event.type == "TicketMessagePosted"
            and d.get("author_kind") == "client"
            and not d.get("internal")
            and ticket is not None
            and ticket.assignee_id
        ):
            kind, candidates = "client_reply", await directory.staff(conn, [ticket.assignee_id])
            department_id = ticket.department_id
        elif event.type == "TicketTransferred" and d.get("to_staff_id"):
            kind, candidates = "ticket_transferred", await directory.staff(conn, [d["to_staff_id"]])
            department_id = d.get("to_department_id") or (ticket.department_id if ticket else None)
        elif event.type == "DeadlineExpired" and d.get("kind") == "response_time":
            if ticket is not None and ticket.assignee_id:
                candidates = await directory.staff(conn, [ticket.assignee_id])
            else:
                candidates = await directory.members(conn, d.get("department_id"))
            kind, department_id = "deadline_near", d.get("department_id")
        else:
            return []
        subscriptions = await directory.staff_subscriptions(conn, [c.staff_id for c in candidates])
        recipients = staff_recipients(kind, candidates, subscriptions, exclude=event.actor.id)
        if not recipients:
            return []
        ticket_id = str(d.get("ticket_id", ""))
        names = await directory.department_name(conn, department_id)
        actor = await directory.staff(conn, [event.actor.id])
        number = d.get("number")
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
                names = await directory.department_name(conn, d.get("to_department_id"))
            by_language = {lang: {"department": names.get(lang, "")} for lang in ("en", "ru")}
        else:
            return []
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
            author = await directory.staff(conn, [staff_id] if staff_id else [])
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
