"""The support catalogue's application service: ``SupportCatalog``.

It takes the catalogue's commands (load, decide, append, as everywhere) and
implements ``CatalogPort``, what the ticket core asks of the catalogue when a
ticket is opened or answered. Where each answer comes from:

* ``category``, ``settings``, ``paid_balance``, ``render_template``: the
  aggregate's own stream, read from the store. One short stream per call, and
  always current: a category created a moment ago can take a ticket at once.
* ``blocking_announcement``: the ``catalog_directory`` read model, made exact
  by marks. Every announcement command, after its append and before its
  answer, upserts ``(announcement_id, position)`` into
  ``catalog_announcement_marks``; the projection deletes a mark once it has
  applied that position. The check reads the projection's checkpoint and the
  marks beyond it first, then the active blocking announcements of the read
  model (which is at least at that checkpoint), and loads each marked
  announcement from the store instead of trusting its row. So once
  ``POST /announcements`` (or its ``DELETE``) has answered, every replica's
  next check sees it, without waiting for the projection and without
  scanning the store. A crash between append and mark loses only the mark
  of a command that never answered; the projection catches up in
  milliseconds anyway.
* ``take_paid_request`` / ``return_paid_request``: optimistic concurrency on
  ``paid-requests-<client_id>``: load, decide, append at the loaded version;
  on ``ConcurrencyError`` reload and decide again (``decide_and_append``,
  the kernel's one retry policy), so two takes of the last request end with one ``PaidRequestTaken``
  and one ``PaymentRequired``, and a retried take for the same ticket finds
  its request already held and writes nothing. Crediting, ``PUT
  /support/settings`` and every change of a category, template or
  announcement retry the same way; a caller that names the version it saw
  (``expected_version``) is checked in the decision and gets 409
  ``version_conflict`` instead (the change it has not seen is its to look at).

Departments belong to the departments context: this service knows them only
from ``departments.events``. ``known_department`` (an async predicate the
service may pass, e.g. the ticket core's support-departments read model)
makes an unknown ``department_id`` a 422; without it, ids are shape-checked
only (1-64 characters).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from services.tickets.app.ports import ActiveAnnouncement, CategoryInfo
from services.tickets.app.ports import SupportSettings as SettingsInfo
from services.tickets.domain.catalog import (
    SETTINGS_STREAM,
    Announcement,
    AnnouncementDraft,
    Category,
    CategoryDraft,
    CategoryPatch,
    PaidBalance,
    SettingsPatch,
    SupportSettings,
    Template,
    TemplateDraft,
    TemplatePatch,
    announcement_stream,
    announcement_text,
    category_stream,
    check_id,
    paid_requests_stream,
    template_stream,
)
from services.tickets.domain.events import registry
from services.tickets.projections.catalog import (
    announcement_marks,
    blocking_now,
    marks_metadata,
    text_from_json,
)
from shared.application.commands import CommandAnswer, append, check_seen, decide_and_append, load
from shared.domain.aggregate import Aggregate, DomainError, NotFound
from shared.domain.events import Actor, DomainEvent, utcnow
from shared.eventstore import EventStore
from shared.readmodel.database import ReadModelDB, upsert

A = TypeVar("A", bound=Aggregate)

SETTINGS_ID = "support-settings"

DepartmentCheck = Callable[[str], Awaitable[bool]]


@dataclass
class SupportCatalog:
    """Categories, templates, announcements, settings and paid requests; the ``CatalogPort``."""

    store: EventStore
    db: ReadModelDB
    known_department: DepartmentCheck | None = None
    clock: Callable[[], datetime] = utcnow
    _marks_ready: bool = field(default=False, init=False, repr=False)

    async def start(self) -> None:
        """Create the marks table (the projection's runner also does; either is enough)."""
        await self._ensure_marks()

    # ---------------------------------------------------------------- categories

    async def create_category(self, actor: Actor, draft: CategoryDraft) -> CommandAnswer:
        category_id = str(uuid.uuid4())
        known = await self._department_check(draft.department_id)
        events = Category.create(category_id, draft, known)
        return await self._create(category_stream(category_id), category_id, events, actor)

    async def change_category(
        self,
        actor: Actor,
        category_id: str,
        patch: CategoryPatch,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        known = None
        if "department_id" in patch.model_fields_set and patch.department_id is not None:
            known = await self._department_check(patch.department_id)
        return await self._decide(
            category_stream(category_id),
            Category,
            category_id,
            expected_version,
            lambda category: category.change(patch, known),
            actor,
            what="category",
            found=_exists,
        )

    async def delete_category(
        self, actor: Actor, category_id: str, expected_version: int | None = None
    ) -> CommandAnswer:
        return await self._decide(
            category_stream(category_id),
            Category,
            category_id,
            expected_version,
            lambda category: category.delete(),
            actor,
            what="category",
            found=_exists,
        )

    async def _department_check(self, department_id: str) -> Callable[[str], bool] | None:
        """The predicate for the domain: the answer for ``department_id`` looked up once."""
        if self.known_department is None:
            return None
        try:
            check_id(department_id, "department_id")
        except DomainError:
            return None  # the domain names the field with its own message
        exists = await self.known_department(department_id)
        return lambda candidate: exists if candidate == department_id else False

    # ---------------------------------------------------------------- templates

    async def create_template(self, actor: Actor, draft: TemplateDraft) -> CommandAnswer:
        template_id = str(uuid.uuid4())
        events = Template.create(template_id, draft)
        return await self._create(template_stream(template_id), template_id, events, actor)

    async def change_template(
        self,
        actor: Actor,
        template_id: str,
        patch: TemplatePatch,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        return await self._decide(
            template_stream(template_id),
            Template,
            template_id,
            expected_version,
            lambda template: template.change(patch),
            actor,
            what="template",
            found=_exists,
        )

    async def delete_template(
        self, actor: Actor, template_id: str, expected_version: int | None = None
    ) -> CommandAnswer:
        return await self._decide(
            template_stream(template_id),
            Template,
            template_id,
            expected_version,
            lambda template: template.delete(),
            actor,
            what="template",
            found=_exists,
        )

    async def _template(self, template_id: str, expected_version: int | None) -> Template:
        template = await self._load(template_stream(template_id), Template, expected_version)
        if not template.exists:
            raise NotFound(f"template {template_id}")
        return template

    # ---------------------------------------------------------------- announcements

    async def publish_announcement(self, actor: Actor, draft: AnnouncementDraft) -> CommandAnswer:
        announcement_id = str(uuid.uuid4())
        events = Announcement.publish(announcement_id, draft, self.clock())
        stream = announcement_stream(announcement_id)
        answer = await self._create(stream, announcement_id, events, actor)
        await self._mark(announcement_id, answer.position)
        return answer

    async def end_announcement(
        self, actor: Actor, announcement_id: str, expected_version: int | None = None
    ) -> CommandAnswer:
        """End it now; one that is over already writes nothing (answers position 0)."""
        answer = await self._decide(
            announcement_stream(announcement_id),
            Announcement,
            announcement_id,
            expected_version,
            lambda announcement: announcement.end(self.clock()),
            actor,
            what="announcement",
            found=lambda announcement: bool(announcement.id),  # an ended one: end() says so
        )
        if answer.position:
            await self._mark(announcement_id, answer.position)
        return answer

    async def _ensure_marks(self) -> None:
        if not self._marks_ready:
            await self.db.create_tables(marks_metadata)
            self._marks_ready = True

    async def _mark(self, announcement_id: str, position: int) -> None:
        """Record that ``position`` of this announcement was answered (kept: the largest)."""
        await self._ensure_marks()
        async with self.db.transaction() as conn:
            await upsert(
                conn,
                announcement_marks,
                {"announcement_id": announcement_id, "position": position},
                when=lambda new: announcement_marks.c.position < new.position,
            )

    # ---------------------------------------------------------------- settings

    async def current_settings(self) -> SupportSettings:
        return await load(self.store, registry, SETTINGS_STREAM, SupportSettings)

    async def change_settings(self, actor: Actor, patch: SettingsPatch) -> CommandAnswer:
        """Set the fields given; a concurrent change of other fields is kept (re-decided)."""
        return await decide_and_append(
            self.store,
            registry,
            SETTINGS_STREAM,
            SupportSettings,
            lambda s: s.change(patch),
            answer_id=SETTINGS_ID,
            actor=actor,
        )

    # ---------------------------------------------------------------- paid requests

    async def credit_paid_requests(
        self, actor: Actor, client_id: str, amount: int, comment: str | None = None
    ) -> CommandAnswer:
        """Give the client ``amount`` paid requests (a retry after a concurrent take re-decides)."""
        return await self._paid(client_id, lambda balance: balance.credit(amount, comment), actor)

    async def _paid(
        self,
        client_id: str,
        decide: Callable[[PaidBalance], Sequence[DomainEvent]],
        actor: Actor,
    ) -> CommandAnswer:
        check_id(client_id, "client_id")
        return await decide_and_append(
            self.store,
            registry,
            paid_requests_stream(client_id),
            lambda: PaidBalance.for_client(client_id),
            decide,
            answer_id=client_id,
            actor=actor,
        )

    # ---------------------------------------------------------------- the CatalogPort

    async def category(self, category_id: str) -> CategoryInfo | None:
        """The category, or None when unknown (or deleted); ``topic`` is the English one."""
        try:
            check_id(category_id, "category_id")
        except DomainError:
            return None
        category = await self._load(category_stream(category_id), Category, None)
        if not category.exists:
            return None
        return CategoryInfo(
            category_id=category.id,
            department_id=category.department_id,
            project_id=category.project_id,
            paid=category.paid,
            warning=category.warning,
            topic=category.topic.en,
        )

    async def blocking_announcement(
        self, now: datetime, conn: AsyncConnection | None = None
    ) -> ActiveAnnouncement | None:
        """A blocking announcement active at ``now`` (the one ending last), or None.

        Read on ``conn`` when given (a ``reading()`` connection: one pool checkout
        for all of an open's lookups), else on a connection of its own.
        """
        await self._ensure_marks()
        async with contextlib.AsyncExitStack() as stack:
            reader = (
                conn if conn is not None else await stack.enter_async_context(self.db.reading())
            )
            rows, marked = await blocking_now(reader, now)
        found = [
            _active(str(row.announcement_id), row.text, row.starts_at, row.active_until)
            for row in rows
            if row.announcement_id not in marked
        ]
        for announcement_id in marked:
            announcement = await self._load(
                announcement_stream(announcement_id), Announcement, None
            )
            if announcement.blocking and announcement.active_at(now):
                assert announcement.starts_at is not None and announcement.until is not None
                found.append(
                    ActiveAnnouncement(
                        announcement_id=announcement.id,
                        text=announcement_text(announcement.text),
                        blocking=True,
                        starts_at=announcement.starts_at,
                        ends_at=announcement.until,
                    )
                )
        return max(found, key=lambda a: a.ends_at, default=None)

    async def settings(self) -> SettingsInfo:
        current = await self.current_settings()
        return SettingsInfo(
            transfer_notices_shown=current.transfer_notices_shown,
            close_after_days=current.close_after_days,
            rate_after_days=current.rate_after_days,
            rating_mode=current.rating_mode,
            unknown_senders=current.unknown_senders,
        )

    async def paid_balance(self, client_id: str) -> int:
        """How many paid requests the client has left (0 for a client never credited)."""
        balance = await load(
            self.store,
            registry,
            paid_requests_stream(client_id),
            lambda: PaidBalance.for_client(client_id),
        )
        return balance.balance

    async def take_paid_request(self, client_id: str, ticket_id: str, actor: Actor) -> None:
        """One paid request for ``ticket_id``; ``PaymentRequired`` when none are left."""
        await self._paid(client_id, lambda balance: balance.take(ticket_id), actor)

    async def return_paid_request(self, client_id: str, ticket_id: str, actor: Actor) -> None:
        """Give back the request ``ticket_id`` holds; nothing when it holds none."""
        await self._paid(client_id, lambda balance: balance.give_back(ticket_id), actor)

    async def render_template(self, template_id: str, values: dict[str, str]) -> tuple[str, str]:
        """(subject, body) with the macros filled; ``NotFound`` for an unknown or deleted one."""
        try:
            check_id(template_id, "template_id")
        except DomainError:
            raise NotFound(f"template {template_id}") from None
        template = await self._template(template_id, None)
        return template.rendered(values)

    # ---------------------------------------------------------------- helpers

    async def _load(self, stream: str, new: Callable[[], A], expected_version: int | None) -> A:
        aggregate = await load(self.store, registry, stream, new)
        check_seen(stream, aggregate, expected_version)
        return aggregate

    async def _create(
        self, stream: str, answer_id: str, events: Sequence[DomainEvent], actor: Actor
    ) -> CommandAnswer:
        result = await append(self.store, registry, stream, events, 0, actor=actor)
        assert result is not None  # creating always writes
        return CommandAnswer.of(answer_id, result)

    async def _decide(
        self,
        stream: str,
        new: Callable[[], A],
        answer_id: str,
        expected_version: int | None,
        decide: Callable[[A], Sequence[DomainEvent]],
        actor: Actor,
        *,
        what: str,
        found: Callable[[A], bool],
    ) -> CommandAnswer:
        """Load, decide, append through the kernel's ``decide_and_append`` (its one retry
        policy): 404 naming ``what`` unless ``found``, 409 when ``expected_version`` is not
        the aggregate's (checked in the decision: not retried); nothing decided answers
        where things stand (position 0)."""

        def checked(aggregate: A) -> Sequence[DomainEvent]:
            if not found(aggregate):
                raise NotFound(f"{what} {answer_id}")
            check_seen(stream, aggregate, expected_version)
            return decide(aggregate)

        return await decide_and_append(
            self.store, registry, stream, new, checked, answer_id=answer_id, actor=actor
        )


def _exists(aggregate: Category | Template) -> bool:
    """A category or template that was created and not deleted."""
    return aggregate.exists


def _active(
    announcement_id: str, raw_text: str, starts_at: datetime, until: datetime
) -> ActiveAnnouncement:
    return ActiveAnnouncement(
        announcement_id=announcement_id,
        text=announcement_text(text_from_json(raw_text)),
        blocking=True,
        starts_at=starts_at,
        ends_at=until,
    )
