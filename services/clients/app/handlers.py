"""The clients application layer: load, decide, append; hand credentials to identity.

Credential handover (DESIGN §3: no secret on a topic). The password of a new
client goes from this service to identity once, over identity's internal
HTTP API (``IdentityPort``), authenticated with a short-lived service token;
identity keeps only the argon2 hash. The client's own events carry no
password. Registration asks identity first (which also makes logins unique
across staff and clients), then appends ``ClientRegistered``; if that append
fails, the principal is removed again, so nothing is left half-made.

Personal fields are sealed with the client's key (``shared.privacy.shredding``);
erasure appends ``ClientErased``, removes the principal at identity and
destroys the key.

Every change of a client, a group or a project is one load-decide-append
through the kernel's ``decide_and_append`` (``_decide`` for clients): a
concurrent change is decided again on fresh state under the kernel's one retry
policy; a caller that names the version it saw (``expected_version``) is
checked in the decision, so it gets 409 ``version_conflict`` instead. A call
to identity that must come first (a new password, an impersonation's session)
follows a load that answers 404 for a missing client, so identity is never
asked about one.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select

from services.clients.app.attachments import AttachmentStore
from services.clients.app.ports import IdentityPort, Impersonation
from services.clients.copies import staff_names
from services.clients.domain import client as client_module
from services.clients.domain.client import Client, ClientCard, ClientPatch, References
from services.clients.domain.directory import ClientGroup, Project, group_stream, project_stream
from services.clients.domain.events import MessageSent, Violation, registry
from services.clients.domain.messages import Texts, check_violation, fill
from services.clients.projections import client_groups, clients, projects
from services.clients.projections.queries import ClientFilter, client_query
from shared.application.commands import CommandAnswer, append, check_seen, decide_and_append, load
from shared.domain.aggregate import DomainError, NotFound
from shared.domain.events import Actor, DomainEvent, RecordedEvent
from shared.eventstore import EventStore, StreamState
from shared.privacy.shredding import KeyRing, Sealer, SubjectErased
from shared.readmodel.database import ReadModelDB

log = structlog.get_logger(__name__)

client_stream = client_module.stream_name
MAX_RECIPIENTS = 100_000
SEND_CONCURRENCY = 16


@dataclass(frozen=True)
class MessageDraft:
    """``POST /clients/messages`` as the application layer takes it."""

    client_ids: list[str] | None
    filter: ClientFilter | None
    subject: str | dict[str, str]
    text: str | dict[str, str]
    category_id: str | None = None
    forbid_replies: bool = False
    assign_replies_to_me: bool = False
    strict_language: bool = False
    attachment_ids: Sequence[str] = ()
    violation: Violation | None = None


@dataclass(frozen=True)
class SendReport:
    message_id: str
    recipients: int
    skipped_for_language: int
    position: int


@dataclass
class Clients:
    """The clients application service: every command of the API goes through here."""

    store: EventStore
    db: ReadModelDB
    keys: KeyRing
    identity: IdentityPort
    attachments: AttachmentStore
    # Run after an erasure (companies forget the client), in order.
    on_erased: list[Callable[[Actor, str], Awaitable[None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sealer = Sealer(registry, self.keys)

    async def start(self) -> None:
        await self.keys.create_tables()
        await self.attachments.create_tables()

    # ---------------------------------------------------------------- clients

    async def register_client(
        self, actor: Actor, card: ClientCard, password: str, ip: str | None
    ) -> CommandAnswer:
        client_id = str(uuid.uuid4())
        client_module.check_password(password)
        refs = await self.references(card.project_id, card.groups, card.referrer_id)
        events = Client.register(client_id, card, refs, datetime.now(UTC), ip)
        await self.identity.register(client_id, card.login, password)
        try:
            result = await append(
                self.store,
                registry,
                client_stream(client_id),
                events,
                0,
                actor=actor,
                sealer=self.sealer,
            )
        except BaseException:
            await self.identity.remove(client_id)
            raise
        assert result is not None
        log.info("clients.registered", client_id=client_id)
        return CommandAnswer.of(client_id, result)

    async def change_client(
        self, actor: Actor, client_id: str, patch: ClientPatch, expected_version: int | None
    ) -> CommandAnswer:
        given = patch.model_fields_set
        refs = await self.references(
            patch.project_id if "project_id" in given else None,
            patch.groups if "groups" in given and patch.groups else [],
            patch.referrer_id if "referrer_id" in given else None,
        )
        return await self._decide(
            actor, client_id, lambda client: client.change(patch, refs), expected_version
        )

    async def reset_password(self, actor: Actor, client_id: str, password: str) -> CommandAnswer:
        # Decided once before identity is told (a refused password reaches nobody),
        # and again in the append's decision (on fresh state if it is retried).
        (await self.client(client_id)).reset_password(password)
        await self.identity.change_password(client_id, password)
        return await self._decide(actor, client_id, lambda client: client.reset_password(password))

    async def erase_client(self, actor: Actor, client_id: str) -> CommandAnswer:
        """Delete on request: personal data becomes unreadable everywhere, ids stay.

        Repeating it finishes an erasure cut short (identity unreachable, say).
        """

        def erase(client: Client) -> list[DomainEvent]:
            if not client.id:
                raise NotFound(f"client {client_id}")
            return [] if client.erased else client.erase()  # [] : unchanged, finish the rest

        answer = await decide_and_append(
            self.store,
            registry,
            client_stream(client_id),
            Client,
            erase,
            answer_id=client_id,
            actor=actor,
            sealer=self.sealer,
        )
        with contextlib.suppress(NotFound):  # removed by an earlier attempt
            await self.identity.remove(client_id)
        await self.keys.destroy(client_id)
        for forget in self.on_erased:
            await forget(actor, client_id)
        log.info("clients.erased", client_id=client_id)
        return answer

    async def suspend_services(self, actor: Actor, client_id: str) -> CommandAnswer:
        return await self._decide(actor, client_id, lambda client: client.suspend_services())

    async def resume_services(self, actor: Actor, client_id: str) -> CommandAnswer:
        return await self._decide(actor, client_id, lambda client: client.resume_services())

    async def impersonate(
        self, actor: Actor, staff_session_id: str, client_id: str
    ) -> tuple[Impersonation, CommandAnswer]:
        """A client token for a staff member; the client's stream records who is behind it."""
        await self.client(client_id)  # 404 before identity opens a session
        impersonation = await self.identity.impersonate(client_id, actor.id, staff_session_id)
        answer = await self._decide(
            actor,
            client_id,
            lambda client: client.impersonated(actor.id, impersonation.session_id),
        )
        log.info("clients.impersonated", client_id=client_id, staff_id=actor.id)
        return impersonation, answer

    async def client(self, client_id: str, expected_version: int | None = None) -> Client:
        client = await load(
            self.store, registry, client_stream(client_id), Client, sealer=self.sealer
        )
        _present(client, client_id, expected_version)
        return client

    async def _decide(
        self,
        actor: Actor,
        client_id: str,
        decide: Callable[[Client], list[DomainEvent]],
        expected_version: int | None = None,
    ) -> CommandAnswer:
        """Load, decide, append with the sealer through the kernel's ``decide_and_append``
        (its one retry policy); a caller's ``expected_version`` is checked in the decision."""

        def checked(client: Client) -> list[DomainEvent]:
            _present(client, client_id, expected_version)
            return decide(client)

        return await decide_and_append(
            self.store,
            registry,
            client_stream(client_id),
            Client,
            checked,
            answer_id=client_id,
            actor=actor,
            sealer=self.sealer,
        )

    async def references(
        self, project_id: str | None, groups: Sequence[str] | None, referrer_id: str | None
    ) -> References:
        """Which of the named projects, groups and clients exist (from the read model)."""
        async with self.db.engine.connect() as conn:
            found_projects: set[str] = set()
            if project_id:
                rows = await conn.execute(
                    select(projects.c.project_id).where(
                        (projects.c.project_id == project_id) & projects.c.deleted.is_(False)
                    )
                )
                found_projects = {r.project_id for r in rows}
            found_groups: set[str] = set()
            if groups:
                rows = await conn.execute(
                    select(client_groups.c.group_id).where(
                        client_groups.c.group_id.in_(list(groups))
                        & client_groups.c.deleted.is_(False)
                    )
                )
                found_groups = {r.group_id for r in rows}
            found_clients: set[str] = set()
            if referrer_id:
                rows = await conn.execute(
                    select(clients.c.client_id).where(
                        (clients.c.client_id == referrer_id) & clients.c.erased.is_(False)
                    )
                )
                found_clients = {r.client_id for r in rows}
        return References(
            frozenset(found_projects), frozenset(found_groups), frozenset(found_clients)
        )

    # ---------------------------------------------------------------- groups and projects

    async def create_group(self, actor: Actor, name: str) -> CommandAnswer:
        group_id = str(uuid.uuid4())
        result = await append(
            self.store, registry, group_stream(group_id), ClientGroup.create(group_id, name), 0,
            actor=actor,
        )  # fmt: skip
        assert result is not None
        return CommandAnswer.of(group_id, result)

    async def rename_group(self, actor: Actor, group_id: str, name: str) -> CommandAnswer:
        return await decide_and_append(
            self.store, registry, group_stream(group_id), ClientGroup,
            lambda group: group.rename(name), answer_id=group_id, actor=actor,
        )  # fmt: skip

    async def delete_group(self, actor: Actor, group_id: str) -> CommandAnswer:
        return await decide_and_append(
            self.store, registry, group_stream(group_id), ClientGroup,
            lambda group: group.delete(), answer_id=group_id, actor=actor,
        )  # fmt: skip

    async def create_project(self, actor: Actor, name: str, description: str) -> CommandAnswer:
        project_id = str(uuid.uuid4())
        events = Project.create(project_id, name, description)
        result = await append(
            self.store, registry, project_stream(project_id), events, 0, actor=actor
        )
        assert result is not None
        return CommandAnswer.of(project_id, result)

    async def change_project(
        self, actor: Actor, project_id: str, name: str | None, description: str | None
    ) -> CommandAnswer:
        return await decide_and_append(
            self.store, registry, project_stream(project_id), Project,
            lambda project: project.change(name, description), answer_id=project_id, actor=actor,
        )  # fmt: skip

    async def delete_project(self, actor: Actor, project_id: str) -> CommandAnswer:
        return await decide_and_append(
            self.store, registry, project_stream(project_id), Project,
            lambda project: project.delete(), answer_id=project_id, actor=actor,
        )  # fmt: skip

    # ---------------------------------------------------------------- messages

    async def send_message(self, actor: Actor, draft: MessageDraft) -> SendReport:
        """One ``ClientMessaged`` per recipient, macros filled per client; then ``MessageSent``."""
        if (draft.client_ids is None) == (draft.filter is None):
            raise DomainError("client_ids", "give either client_ids or filter")
        texts = Texts.of(draft.subject, draft.text)
        violation = draft.violation
        if violation is not None:
            violation = check_violation(violation, datetime.now(UTC))
        attachments = await self.attachments.records(list(draft.attachment_ids))
        recipients = await self._recipients(draft)
        admin_name = await self.staff_name(actor.impersonator_id or actor.id)
        message_id = str(uuid.uuid4())
        assign_to = (actor.impersonator_id or actor.id) if draft.assign_replies_to_me else None
        skipped = 0
        chosen: list[tuple[dict[str, Any], str]] = []
        for row in recipients:
            language = texts.language_for(row["language"], draft.strict_language)
            if language is None:
                skipped += 1
                continue
            chosen.append((row, language))
        sent = 0
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def send_one(row: dict[str, Any], language: str) -> None:
            nonlocal sent
            person = row["contact_person"] or row["login"] or ""
            events = Client(id=row["client_id"]).message(
                message_id,
                subject=fill(texts.subjects[language], person, admin_name),
                text=fill(texts.bodies[language], person, admin_name),
                language=language,
                category_id=draft.category_id,
                forbid_replies=draft.forbid_replies,
                assign_replies_to=assign_to,
                attachments=attachments,
                violation=violation,
            )
            async with gate:
                try:
                    # A message does not depend on the card: no version check, so
                    # a concurrent edit of the client never fails a big send.
                    await append(
                        self.store, registry, client_stream(row["client_id"]), events, 0,
                        actor=actor, sealer=self.sealer, expected=StreamState.ANY,
                    )  # fmt: skip
                except SubjectErased:
                    return  # erased since the list was read
            sent += 1

        await asyncio.gather(*(send_one(row, language) for row, language in chosen))
        summary = MessageSent(
            message_id=message_id,
            recipients=sent,
            skipped_for_language=skipped,
            category_id=draft.category_id,
            violation=violation is not None,
        )
        result = await append(
            self.store, registry, f"message-{message_id}", [summary], 0, actor=actor
        )
        assert result is not None
        log.info("clients.message_sent", message_id=message_id, recipients=sent, skipped=skipped)
        return SendReport(message_id, sent, skipped, result.position)

    async def _recipients(self, draft: MessageDraft) -> list[dict[str, Any]]:
        if draft.client_ids is not None:
            wanted = sorted(set(draft.client_ids))
            if not wanted:
                raise DomainError("client_ids", "at least one client")
            query = client_query(ClientFilter(id=wanted))
        else:
            assert draft.filter is not None
            query = client_query(draft.filter)
        async with self.db.engine.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(query.limit(MAX_RECIPIENTS + 1))]
        if len(rows) > MAX_RECIPIENTS:
            raise DomainError("filter", f"matches more than {MAX_RECIPIENTS} clients; narrow it")
        if draft.client_ids is not None:
            missing = set(draft.client_ids) - {r["client_id"] for r in rows}
            if missing:
                raise DomainError("client_ids", f"no client {sorted(missing)[0]}")
        return rows

    async def staff_name(self, staff_id: str) -> str:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(staff_names.c.name_en).where(staff_names.c.staff_id == staff_id)
                )
            ).first()
        return row.name_en if row is not None else ""

    # ---------------------------------------------------------------- other contexts

    async def on_notifier_event(self, conn: Any, event: RecordedEvent) -> None:
        """``DeadlineExpired`` of an abuse notice: take the notice's action (once)."""
        if event.type != "DeadlineExpired" or event.data.get("kind") != "abuse_notice":
            return
        client_id = str(event.data.get("client_id", ""))
        message_id = str(event.data.get("message_id", ""))
        if not client_id or not message_id:
            log.warning("clients.deadline_without_ids", event_id=str(event.event_id))
            return
        stream = client_stream(client_id)
        await decide_and_append(
            self.store,
            registry,
            stream,
            Client,
            lambda client: client.notice_expired(message_id),
            answer_id=client_id,
            actor=Actor(id="notifier", kind="system"),
            loader=lambda: load(self.store, registry, stream, Client, sealer=self.sealer),
        )


def _present(client: Client, client_id: str, expected_version: int | None) -> None:
    """404 for a client that is not there; 409 ``version_conflict`` when the caller names a
    version that is no longer the client's (raised from a decision: not retried)."""
    if not client.exists:
        raise NotFound(f"client {client_id}")
    check_seen(client_stream(client_id), client, expected_version)
