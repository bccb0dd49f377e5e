"""The mail gateway: mail to a department's inbound address opens or continues a ticket.

Each mail is handled at least once (the SMTP/LMTP server answers 250 only after
it is applied, and a temporary failure is a 451 the sender's server retries)
and applied once: its ``Message-ID`` is the key of ``inbound_mails`` (the same
mail again is recognised and only acknowledged), the ticket a new mail opens
has an id derived from it, and so has the message a reply posts, so a retry
after a crash finds what the first attempt wrote. The raw mail is kept in
``inbound_mails`` (not in the event log) for ``keep_days``, then pruned.

Routing (``receive``):

1. mail written by a machine (``domain.inbound.machine_written``) is
   acknowledged and dropped: no ticket, no answer, no loop;
2. a blocked sender, a mail too large or with too many or refused files, or an
   unusable one is refused with the reason (5xx), nothing written;
3. the sender is the client with that e-mail, or a company contact's client
   (the clients service's internal API; its answers kept a short while and
   forgotten on the clients' facts that change addresses, ``app.senders``);
4. a mail naming a ticket (threading headers, ``[#1042]`` in the subject) that
   the sender may write to continues it, as the client's message;
5. otherwise it opens a ticket in the department whose inbound address it was
   sent to, with the same checks as ``POST /tickets``.

An unknown sender (no client writes from the address) follows the support
setting ``unknown_senders``:

* ``open`` (the default): the mail continues the contact's own ticket it names
  (the address must be the one that opened it), or opens a ticket *from a
  contact* in the department of the address: the contact's address and name
  sealed with the contact's own key, in the staff queue, seen by no client
  until staff link it to one (``Tickets.link_to_client``);
* ``reject``: a contact's ticket opened before still takes its contact's mail;
  anything else from an unknown sender gets a short notice by mail (``NoticeMailer``; to the
  envelope sender, with an empty return path and ``Auto-Submitted:
  auto-replied``, so nothing answers it) and the SMTP transaction is accepted
  (250, status ``declined``): a 5xx would make the sender's server bounce, and
  a bounce to a forged sender is backscatter. Without a mailer it is a 550.

Groups: the mails being handled at the same moment (one per SMTP connection
at most) share their statements through the kernel's group commit
(``shared.application.grouping``): one ``INSERT`` records them all, one round of
lookups reads their departments, clients and the blocking announcement (three
statements), the numbering gives their numbers in one append, and one
``executemany`` records their outcomes. A lone mail is handled at once, alone.
Each ticket is still its own append, and each mail gets its own answer: a mail
refused in a group is answered 550 while the others open their tickets, and a
failure that is the group's (the database down) is every mail's 451. A mail's
answer is sent only once its ticket is written and its outcome recorded.

Metrics: ``mail_received_total``, ``mail_tickets_opened_total``,
``mail_tickets_continued_total``, ``mail_rejected_total{reason}``,
``mail_ignored_total{reason}``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from prometheus_client import Counter
from sqlalchemy import (
    Column,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    select,
    update,
)

from services.tickets.app.handlers import ContactDraft, Known, NotAllowed, OpenDraft, Tickets
from services.tickets.app.ports import ActiveAnnouncement
from services.tickets.app.senders import Senders
from services.tickets.copies import support
from services.tickets.domain import inbound
from services.tickets.domain.ticket import contact_id as contact_of
from services.tickets.projections.queue import tickets
from shared.access import Access, Principal
from shared.application.grouping import Grouped
from shared.domain import Conflict, DomainError, NotFound, PaymentRequired
from shared.domain.attachments import clean_filename
from shared.eventstore import ConcurrencyError
from shared.readmodel import ReadModelDB, UtcDateTime, dialect_insert
from shared.readmodel.attachments import check

log = structlog.get_logger(__name__)

RECEIVED = Counter("mail_received_total", "Mails taken by the mail gateway")
OPENED = Counter("mail_tickets_opened_total", "Tickets opened by mail")
CONTINUED = Counter("mail_tickets_continued_total", "Tickets continued by mail")
REJECTED = Counter("mail_rejected_total", "Mails refused by the gateway", ["reason"])
IGNORED = Counter("mail_ignored_total", "Machine-written mails dropped", ["reason"])

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:provider-backoffice:tickets:mail")

metadata = MetaData()

inbound_mails = Table(
    "inbound_mails",
    metadata,
    Column("message_id", String(250), primary_key=True),
    Column("received_at", UtcDateTime(), nullable=False, index=True),
    Column("mail_from", String(320), nullable=False),
    Column("raw", LargeBinary, nullable=True),  # pruned after keep_days
    # received / opened / continued / ignored / rejected / declined (answered with a notice)
    Column("status", String(16), nullable=False),
    Column("reason", String(200), nullable=True),
    Column("ticket_id", String(64), nullable=True),
)


# The outcomes of a group of mails, one executemany.
_RECORD = (
    update(inbound_mails)
    .where(inbound_mails.c.message_id == bindparam("m_message_id"))
    .values(
        status=bindparam("m_status"),
        reason=bindparam("m_reason"),
        ticket_id=bindparam("m_ticket_id"),
    )
)


class NoticeMailer(Protocol):
    async def send_notice(self, to: str, subject: str, body: str, in_reply_to: str) -> None:
        """Mail ``to`` an answer about their mail (an auto-reply: nothing answers it)."""
        ...


NOTICE_SUBJECT = "Not accepted: {subject}"
NOTICE_BODY = (
    'Your mail "{subject}" to {address} was not accepted: this address takes\n'
    "requests from our clients only, and no client account uses {sender}.\n\n"
    "Please write again from the e-mail address of your client account, or log in\n"
    "and open a request there.\n\n"
    "This is an automatic answer.\n"
)


@dataclass(frozen=True)
class Outcome:
    """What became of a mail: ``status`` and, when refused, the reason (a code)."""

    status: str  # opened / continued / ignored / rejected / declined / duplicate
    reason: str | None = None
    ticket_id: str | None = None
    temporary: bool = False  # worth another try (the SMTP answer is 451)


class Unknown(Exception):
    """Something the mail needs is not known here yet: try again later (451)."""


class Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class MailGateway:
    tickets: Tickets
    db: ReadModelDB
    senders: Senders
    access: Callable[[str], Access | None]
    max_bytes: int = 25 * 1024 * 1024
    max_files: int = 10
    keep_days: float = 30.0
    blocked: frozenset[str] = frozenset()  # addresses, or domains as "@example.com"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    notices: NoticeMailer | None = None  # the notice of a refused unknown sender
    # Group commit (``shared.application.grouping``): the mails being handled at the same
    # moment share their statements (see "Groups" above).
    _handled: Grouped[tuple[inbound.InboundMail, bytes, str], Outcome] = field(
        init=False, repr=False
    )
    _looked_up: Grouped[tuple[tuple[str, ...], str], tuple[str | None, Known]] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        self._handled = Grouped(self._handle_all)
        self._looked_up = Grouped(self._look_up_all)

    async def start(self) -> None:
        await self.db.create_tables(metadata)

    async def receive(self, raw: bytes, mail_from: str, recipients: list[str]) -> Outcome:
        RECEIVED.inc()
        if len(raw) > self.max_bytes:
            return self._rejected("too_large", f"larger than {self.max_bytes} bytes")
        try:
            mail = inbound.parse(raw, mail_from, recipients)
        except DomainError as error:
            return self._rejected("broken_mime", error.message)
        try:
            return await self._handled((mail, raw, mail_from))
        except Exception:
            # The group's record could not be written or read (the database down):
            # nothing says the mail was handled, so its sender's server tries again.
            log.exception("mail.failed", message_id=mail.message_id)
            return Outcome("failed", "temporary_failure", temporary=True)

    async def _handle_all(
        self, group: list[tuple[inbound.InboundMail, bytes, str]]
    ) -> list[Outcome]:
        """One round for the mails waiting together: recorded in one statement, routed
        side by side (their lookups and numbers in one round each), outcomes recorded in
        one statement before any of them is answered."""
        fresh = await self._remember_all([(m.message_id, raw, sender) for m, raw, sender in group])
        outcomes = await asyncio.gather(
            *(
                self._outcome(mail) if new else _answered(Outcome("duplicate"))
                for (mail, _, _), new in zip(group, fresh, strict=True)
            )
        )
        handled = [
            (mail.message_id, outcome)
            for (mail, _, _), new, outcome in zip(group, fresh, outcomes, strict=True)
            if new and not outcome.temporary
        ]
        if handled:
            await self._record_all(handled)
        return outcomes

    async def _outcome(self, mail: inbound.InboundMail) -> Outcome:
        try:
            return await self._route(mail)
        except Refused as refused:
            return self._rejected(refused.reason, refused.message)
        except Unknown as unknown:
            log.info("mail.deferred", message_id=mail.message_id, why=str(unknown))
            return Outcome("failed", "not_known_yet", temporary=True)
        except Exception:
            # Not recorded as handled: the sender's server tries again (451), and the
            # retry goes on where this one stopped (the ids derive from the mail).
            log.exception("mail.failed", message_id=mail.message_id)
            return Outcome("failed", "temporary_failure", temporary=True)

    async def _route(self, mail: inbound.InboundMail) -> Outcome:
        if mail.machine is not None:
            IGNORED.labels(mail.machine).inc()
            log.info("mail.ignored", reason=mail.machine, message_id=mail.message_id)
            return Outcome("ignored", mail.machine)
        domain = "@" + mail.sender.rpartition("@")[2]
        if mail.sender in self.blocked or domain in self.blocked:
            raise Refused("blocked_sender", "this sender is blocked")
        if len(mail.files) > self.max_files:
            raise Refused("too_many_files", f"at most {self.max_files} files a mail")
        policy = self.tickets.files.policy if self.tickets.files else None
        for file in mail.files:  # all checked before anything is kept
            if policy is None:
                raise Refused("file_refused", "this service takes no files")
            try:
                await check(file.data, clean_filename(file.filename), policy)
            except DomainError as error:
                raise Refused("file_refused", error.message) from None
        client_id = await self.senders.client_of(mail.sender)
        if client_id is None:
            return await self._from_unknown(mail)
        # Read now even for a reply (which needs no department): most mails open a
        # ticket, and the open takes what is read here instead of reading it again.
        department_id, known = await self._looked_up((mail.recipients, client_id))
        client = known.opening.client
        access = self.access(client_id)
        if client is None or access is None:
            # Registered a moment ago: this service learns of it from the topics soon.
            raise Unknown(f"client {client_id} is not known here yet")
        if access.disabled or access.kind != "client" or client.erased:
            raise Refused("unknown_sender", "this client may not write to support")
        principal = Principal(client_id, "client", "mail", None, access)
        ticket_id = await self._named_ticket(mail, principal)
        body = mail.text or "(no text)"
        if ticket_id is not None:
            files = await self._keep_files(mail, client_id, "continued")
            message_id = _derived("message", mail.message_id)
            try:
                await self.tickets.post_message(
                    principal, ticket_id, body, False, None, files, message_id=message_id
                )
            except (DomainError, Conflict, NotAllowed, NotFound) as error:
                raise Refused("not_accepted", _why(error)) from None
            CONTINUED.inc()
            log.info("mail.continued", ticket_id=ticket_id, message_id=mail.message_id)
            return Outcome("continued", ticket_id=ticket_id)
        if department_id is None:
            raise Refused("unknown_address", "no department takes mail at this address")
        files = await self._keep_files(mail, client_id, "opened")
        new_id = _derived("ticket", mail.message_id)
        draft = OpenDraft(
            department_id=department_id,
            subject=mail.subject,
            body=body,
            attachment_ids=files,
            ticket_id=new_id,
        )
        try:
            await self.tickets.open_ticket(principal, draft, known=known)
        except ConcurrencyError:
            pass  # opened by an earlier attempt at this same mail
        except (DomainError, Conflict, NotAllowed, NotFound, PaymentRequired) as error:
            raise Refused("not_accepted", _why(error)) from None
        OPENED.inc()
        log.info("mail.opened", ticket_id=new_id, message_id=mail.message_id)
        return Outcome("opened", ticket_id=new_id)

    async def _from_unknown(self, mail: inbound.InboundMail) -> Outcome:
        """Mail from an address that is no client's (see ``unknown_senders`` above)."""
        body = mail.text or "(no text)"
        for ticket_id in await self._candidates(mail):
            ticket = await self.tickets.load(ticket_id)
            if not ticket.exists or ticket.contact_id is None:
                continue
            if ticket.contact_email != mail.sender or ticket.replies_forbidden:
                continue
            files = await self._keep_files(mail, ticket.contact_id, "continued")
            try:
                await self.tickets.post_from_contact(
                    ticket_id, mail.sender, body, files,
                    message_id=_derived("message", mail.message_id),
                )  # fmt: skip
            except (DomainError, Conflict, NotFound) as error:
                raise Refused("not_accepted", _why(error)) from None
            CONTINUED.inc()
            log.info("mail.continued_by_contact", ticket_id=ticket_id)
            return Outcome("continued", ticket_id=ticket_id)
        settings = await self.tickets.settings()
        if settings.unknown_senders == "reject":
            if self.notices is None or not mail.return_path:
                raise Refused("unknown_sender", "no client writes from this address")
            address = mail.recipients[0] if mail.recipients else "this address"
            await self.notices.send_notice(
                mail.return_path,
                NOTICE_SUBJECT.format(subject=mail.subject),
                NOTICE_BODY.format(subject=mail.subject, address=address, sender=mail.sender),
                mail.message_id,
            )
            REJECTED.labels("unknown_sender").inc()
            log.info("mail.declined", reason="unknown_sender", message_id=mail.message_id)
            return Outcome("declined", "unknown_sender")
        department_id, _ = await self._looked_up((mail.recipients, ""))  # no client: no row
        if department_id is None:
            raise Refused("unknown_address", "no department takes mail at this address")
        contact = contact_of(mail.message_id)
        files = await self._keep_files(mail, contact, "opened")
        new_id = _derived("ticket", mail.message_id)
        draft = ContactDraft(
            contact_id=contact,
            email=mail.sender,
            name=mail.sender_name,
            department_id=department_id,
            subject=mail.subject,
            body=body,
            ticket_id=new_id,
            attachment_ids=files,
        )
        try:
            await self.tickets.open_for_contact(draft)
        except ConcurrencyError:
            pass  # opened by an earlier attempt at this same mail
        except (DomainError, Conflict, NotFound) as error:
            raise Refused("not_accepted", _why(error)) from None
        OPENED.inc()
        log.info("mail.opened_by_contact", ticket_id=new_id, message_id=mail.message_id)
        return Outcome("opened", ticket_id=new_id)

    async def _candidates(self, mail: inbound.InboundMail) -> list[str]:
        """The tickets a mail names: by its threading headers, then by the number."""
        candidates = list(mail.references)
        if mail.number is not None:
            async with self.db.reading() as conn:
                found = (
                    await conn.execute(
                        select(tickets.c.ticket_id).where(tickets.c.number == mail.number)
                    )
                ).scalar()
            if found:
                candidates.append(str(found))
        return candidates

    async def _named_ticket(self, mail: inbound.InboundMail, principal: Principal) -> str | None:
        """The ticket the mail answers, if the sender may write to it."""
        for ticket_id in await self._candidates(mail):
            ticket = await self.tickets.load(ticket_id)
            if ticket.exists and ticket.client_id == principal.id and not ticket.replies_forbidden:
                return ticket_id
        return None

    async def _keep_files(
        self, mail: inbound.InboundMail, client_id: str, purpose: str
    ) -> tuple[str, ...]:
        # ``client_id``: the uploader the files are kept for (a client, or a contact).
        """The mail's files kept (checked before), with ids derived from the mail."""
        if not mail.files or self.tickets.files is None:
            return ()
        kept: list[str] = []
        store = self.tickets.files
        for i, file in enumerate(mail.files):
            attachment_id = str(_derived(f"file-{purpose}-{i}", mail.message_id))
            if await store.content(attachment_id) is None:
                await store.put(file.data, file.filename, client_id, attachment_id)
            kept.append(attachment_id)
        return tuple(kept)

    async def _look_up_all(
        self, wanted: list[tuple[tuple[str, ...], str]]
    ) -> list[tuple[str | None, Known]]:
        """A group's lookups on one connection: the department of each mail's address,
        its client, and the blocking announcement, three statements for the group."""
        async with self.db.reading() as conn:
            found = await support.openings_by_address(conn, wanted)
            blocking: ActiveAnnouncement | None = await self.tickets.catalog.blocking_announcement(
                self.tickets.clock(), conn
            )
        return [(department_id, Known(opening, blocking)) for department_id, opening in found]

    # ------------------------------------------------------------ the record

    # Each a single statement committed alone (one round trip, no BEGIN/COMMIT) for a
    # group of mails: the record is one row a mail, and a mail seen again after a crash
    # goes on from its status.

    async def _remember_all(self, mails: list[tuple[str, bytes, str]]) -> list[bool]:
        """Record the mails; False for each handled before (received again)."""
        received_at = self.clock()
        rows: dict[str, dict[str, object]] = {}
        for message_id, raw, mail_from in mails:  # the same mail twice in a group: one row
            rows.setdefault(
                message_id,
                {
                    "message_id": message_id,
                    "received_at": received_at,
                    "mail_from": mail_from[:320],
                    "raw": raw,
                    "status": "received",
                },
            )
        inserted = {
            row[0]
            for row in await self.db.fetch_alone(
                dialect_insert(self.db.dialect, inbound_mails)
                .on_conflict_do_nothing()
                .returning(inbound_mails.c.message_id),
                list(rows.values()),  # as parameters: compiled once (ROWS in readmodel.database)
            )
        }
        seen = [message_id for message_id in rows if message_id not in inserted]
        statuses: dict[str, str] = {}
        if seen:
            async with self.db.reading() as conn:
                found = await conn.execute(
                    select(inbound_mails.c.message_id, inbound_mails.c.status).where(
                        inbound_mails.c.message_id.in_(seen)
                    )
                )
                statuses = {row.message_id: row.status for row in found}
        # Each copy of a mail new in this group goes on, as two attempts at once always
        # did (the ids derived from the mail make them one ticket); so does an attempt
        # that failed half-way ("received").
        return [
            message_id in inserted or statuses.get(message_id) == "received"
            for message_id, _, _ in mails
        ]

    async def _record_all(self, outcomes: list[tuple[str, Outcome]]) -> None:
        await self.db.execute_alone(
            _RECORD,
            [
                {
                    "m_message_id": message_id,
                    "m_status": outcome.status,
                    "m_reason": outcome.reason,
                    "m_ticket_id": outcome.ticket_id,
                }
                for message_id, outcome in outcomes
            ],
        )

    def _rejected(self, reason: str, message: str) -> Outcome:
        REJECTED.labels(reason).inc()
        log.info("mail.rejected", reason=reason, detail=message)
        return Outcome("rejected", f"{reason}: {message}")

    async def prune(self) -> int:
        """Forget mails older than ``keep_days`` (their raw text and their dedupe key)."""
        before = self.clock() - timedelta(days=self.keep_days)
        async with self.db.transaction() as conn:
            gone = await conn.execute(
                delete(inbound_mails).where(inbound_mails.c.received_at < before)
            )
        return int(gone.rowcount or 0)


async def _answered(outcome: Outcome) -> Outcome:
    return outcome


def _derived(purpose: str, message_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{purpose}:{message_id}"))


def _why(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    return str(message)[:200]
