"""The support catalogue's aggregates: categories, templates, announcements, settings, paid balance.

Pure: each takes commands and returns events (``catalog_events``), never does
I/O. What it must know of the world (the time now, which departments exist)
the application layer passes in.

Rules:

* texts are stripped; names and topics are required, at most ``MAX_NAME``
  characters, without control characters (long texts – a warning, a template
  body, an announcement – may hold line breaks and tabs);
* ids of other contexts (departments, projects, clients, tickets) are
  1–``MAX_ID`` characters without surrounding spaces;
* a category's ``sort`` is within ±``MAX_SORT``;
* an announcement needs time zones on ``starts_at`` and ``ends_at``; it ends
  after it starts and not in the past; ending it early ("delete") cuts it off
  at that moment, and ending one that is already over writes nothing;
* settings: ``transfer_notices_shown`` 0–100, ``close_after_days`` null or
  1–365, ``rate_after_days`` null or 0–365, ``rating_mode`` message or ticket,
  ``unknown_senders`` open or reject;
* paid requests: staff credit 1–``MAX_CREDIT`` at a time; a ticket holds at
  most one request: taking one for a ticket that holds one writes nothing
  (a redelivered take), returning one for a ticket that holds none writes
  nothing (a repeated return); the balance never goes below zero
  (``PaymentRequired("no_paid_requests")``);
* a deleted category or template takes no further command (404).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    WithJsonSchema,
)

from services.tickets.domain.catalog_events import (
    ANNOUNCEMENT_EVENTS,
    CATEGORY_EVENTS,
    PAID_REQUEST_EVENTS,
    SETTINGS_EVENTS,
    TEMPLATE_EVENTS,
    AnnouncementEnded,
    AnnouncementPublished,
    CategoryField,
    LocalizedText,
    PaidRequestReturned,
    PaidRequestsCredited,
    PaidRequestTaken,
    RatingMode,
    ResponseTemplateChanged,
    ResponseTemplateCreated,
    ResponseTemplateDeleted,
    SettingsField,
    SupportSettingsChanged,
    TemplateField,
    TicketCategoryChanged,
    TicketCategoryCreated,
    TicketCategoryDeleted,
    UnknownSenders,
)
from shared.domain.aggregate import Aggregate, DomainError, NotFound, PaymentRequired
from shared.domain.events import DomainEvent

MAX_ID = 64  # read models key departments, projects, clients and tickets with String(64)
MAX_NAME = 200
MAX_WARNING = 2000
MAX_SUBJECT = 300
MAX_BODY = 20_000
MAX_ANNOUNCEMENT = 2000
MAX_COMMENT = 500
MAX_SORT = 1_000_000
MAX_CREDIT = 100_000
MAX_BALANCE = 10_000_000

SETTINGS_STREAM = "support-settings"

MACROS = ("client_person", "admin_name", "ticket_id", "ticket_subject", "department")
"""The macros a template may use; any other ``%word%`` stays as written."""

_MACRO = re.compile(r"%([a-z_]+)%")


def category_stream(category_id: str) -> str:
    return f"ticket-category-{category_id}"


def template_stream(template_id: str) -> str:
    return f"ticket-template-{template_id}"


def announcement_stream(announcement_id: str) -> str:
    return f"announcement-{announcement_id}"


def paid_requests_stream(client_id: str) -> str:
    return f"paid-requests-{client_id}"


# ---------------------------------------------------------------- commands

SortValue = Annotated[StrictInt, Field(description=f"between -{MAX_SORT} and {MAX_SORT}")]


def _text_in(value: Any) -> LocalizedText | str:
    """A string, or ``{"en", "ru"}`` with string values (the rules come later, per field)."""
    if isinstance(value, str | LocalizedText):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"en", "ru"})
        if unknown:
            raise ValueError(f"languages are en and ru, not {', '.join(map(str, unknown))}")
        if not all(isinstance(text, str) for text in value.values()):
            raise ValueError("each language's text must be a string")
        return LocalizedText(en=value.get("en", ""), ru=value.get("ru", ""))
    raise ValueError('a string or {"en": ..., "ru": ...}')


TextIn = Annotated[
    LocalizedText | str,
    PlainValidator(_text_in),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "properties": {"en": {"type": "string"}, "ru": {"type": "string"}},
                    "additionalProperties": False,
                },
            ]
        }
    ),
]
"""A text given as one string or per language; errors name the field itself."""


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CategoryDraft(_Command):
    """``POST /categories``. ``topic``: ``{"en","ru"}`` (a plain string is the English one)."""

    topic: TextIn
    department_id: str
    project_id: str | None = Field(default=None, description="the project (provider); null: all")
    paid: StrictBool = False
    warning: str = Field(default="", description="shown to the client before opening a ticket")
    sort: SortValue = 0


class CategoryPatch(_Command):
    """``PATCH /categories/{id}``: only the fields given (``model_fields_set``) change."""

    topic: TextIn | None = None
    department_id: str | None = None
    project_id: str | None = None
    paid: StrictBool | None = None
    warning: str | None = None
    sort: SortValue | None = None


class TemplateDraft(_Command):
    """``POST /templates``; ``subject`` and ``body`` may use the ``%macros%`` of ``MACROS``."""

    name: str
    subject: str = ""
    body: str


class TemplatePatch(_Command):
    name: str | None = None
    subject: str | None = None
    body: str | None = None


class AnnouncementDraft(_Command):
    """``POST /announcements``; ``starts_at`` defaults to now."""

    text: TextIn
    starts_at: datetime | None = None
    ends_at: datetime
    blocking: StrictBool = False


class SettingsPatch(_Command):
    """``PUT /support/settings``: the fields given change, the others keep their values."""

    transfer_notices_shown: StrictInt | None = Field(default=None, description="0-100")
    close_after_days: StrictInt | None = Field(default=None, description="null (never) or 1-365")
    rate_after_days: StrictInt | None = Field(default=None, description="null (never) or 0-365")
    rating_mode: RatingMode | None = None
    unknown_senders: UnknownSenders | None = Field(
        default=None, description="open (a ticket from a contact) or reject (with a notice)"
    )


class PaidCredit(_Command):
    """``POST /clients/{id}/paid-requests``."""

    amount: StrictInt = Field(description=f"1-{MAX_CREDIT}")
    comment: str | None = None


# ---------------------------------------------------------------- field rules

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_EXCEPT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_text(
    value: str | None, field: str, limit: int, *, required: bool, multiline: bool = False
) -> str:
    """Stripped text of at most ``limit`` characters ("" when optional and empty)."""
    clean = (value or "").strip()
    if not clean and required:
        raise DomainError(field, "required")
    if len(clean) > limit:
        raise DomainError(field, f"at most {limit} characters")
    if (_CONTROL_EXCEPT_LINES if multiline else _CONTROL).search(clean):
        raise DomainError(field, "no control characters")
    return clean


def check_id(value: str | None, field: str) -> str:
    if value is None or not (0 < len(value) <= MAX_ID) or value != value.strip():
        raise DomainError(field, f"an id of 1-{MAX_ID} characters without surrounding spaces")
    if _CONTROL.search(value):
        raise DomainError(field, "no control characters")
    return value


def check_localized(
    value: LocalizedText | str | None, field: str, limit: int, *, multiline: bool = False
) -> LocalizedText:
    """``{"en","ru"}`` with the English text required; a plain string is the English text."""
    if value is None:
        raise DomainError(field, "required")
    text = LocalizedText(en=value) if isinstance(value, str) else value
    return LocalizedText(
        en=check_text(text.en, f"{field}.en", limit, required=True, multiline=multiline),
        ru=check_text(text.ru, f"{field}.ru", limit, required=False, multiline=multiline),
    )


def check_aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise DomainError(field, "needs a time zone (e.g. 2030-01-01T12:00:00Z)")
    return value


def _require(given: set[str], patch: BaseModel, *names: str) -> None:
    for name in names:
        if name in given and getattr(patch, name) is None:
            raise DomainError(name, "cannot be null")


# ---------------------------------------------------------------- categories


DepartmentCheck = Callable[[str], bool]


class Category(Aggregate):
    """A ticket category, rebuilt from ``ticket-category-<id>``."""

    handles = CATEGORY_EVENTS

    def __init__(self) -> None:
        super().__init__()
        self.id = ""
        self.topic = LocalizedText(en="")
        self.department_id = ""
        self.project_id: str | None = None
        self.paid = False
        self.warning = ""
        self.sort = 0
        self.deleted = False

    @property
    def exists(self) -> bool:
        return bool(self.id) and not self.deleted

    @staticmethod
    def create(
        category_id: str, draft: CategoryDraft, known_department: DepartmentCheck | None = None
    ) -> list[DomainEvent]:
        """A new category. ``known_department``: when given, the department must pass it."""
        check_id(category_id, "category_id")
        department_id = _check_department(draft.department_id, known_department)
        return [
            TicketCategoryCreated(
                category_id=category_id,
                topic=check_localized(draft.topic, "topic", MAX_NAME),
                department_id=department_id,
                project_id=None
                if draft.project_id is None
                else check_id(draft.project_id, "project_id"),
                paid=draft.paid,
                warning=check_text(
                    draft.warning, "warning", MAX_WARNING, required=False, multiline=True
                ),
                sort=_check_sort(draft.sort),
            )
        ]

    def change(
        self, patch: CategoryPatch, known_department: DepartmentCheck | None = None
    ) -> list[DomainEvent]:
        """Change the fields given; values equal to the current ones write nothing."""
        self._require_exists()
        given = set(patch.model_fields_set)
        _require(given, patch, "topic", "department_id", "paid", "warning", "sort")
        after: dict[str, object] = {}
        if "topic" in given:
            after["topic"] = check_localized(patch.topic, "topic", MAX_NAME)
        if "department_id" in given and patch.department_id != self.department_id:
            after["department_id"] = _check_department(patch.department_id, known_department)
        if "project_id" in given:
            after["project_id"] = (
                None if patch.project_id is None else check_id(patch.project_id, "project_id")
            )
        if "paid" in given:
            after["paid"] = patch.paid
        if "warning" in given:
            after["warning"] = check_text(
                patch.warning, "warning", MAX_WARNING, required=False, multiline=True
            )
        if "sort" in given:
            assert patch.sort is not None
            after["sort"] = _check_sort(patch.sort)
        names: tuple[CategoryField, ...] = (
            "topic",
            "department_id",
            "project_id",
            "paid",
            "warning",
            "sort",
        )
        changed = [n for n in names if n in after and after[n] != getattr(self, n)]
        if not changed:
            return []
        values = {name: after[name] for name in changed}
        return [
            TicketCategoryChanged.model_validate(
                {"category_id": self.id, "changed": changed, **values}
            )
        ]

    def delete(self) -> list[DomainEvent]:
        self._require_exists()
        return [TicketCategoryDeleted(category_id=self.id)]

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, TicketCategoryCreated):
            self.id = event.category_id
            self.topic = event.topic
            self.department_id = event.department_id
            self.project_id = event.project_id
            self.paid = event.paid
            self.warning = event.warning
            self.sort = event.sort
        elif isinstance(event, TicketCategoryChanged):
            for name in event.changed:
                setattr(self, name, getattr(event, name))
        elif isinstance(event, TicketCategoryDeleted):
            self.deleted = True

    def _require_exists(self) -> None:
        if not self.id:
            raise NotFound("category")
        if self.deleted:
            raise NotFound(f"category {self.id} (deleted)")


def _check_department(department_id: str | None, known: DepartmentCheck | None) -> str:
    clean = check_id(department_id, "department_id")
    if known is not None and not known(clean):
        raise DomainError("department_id", f"no department {clean!r} in the support center")
    return clean


def _check_sort(sort: int) -> int:
    if not -MAX_SORT <= sort <= MAX_SORT:
        raise DomainError("sort", f"between -{MAX_SORT} and {MAX_SORT}")
    return sort


# ---------------------------------------------------------------- response templates


def render(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each known ``%macro%`` that ``values`` gives replaced, in one pass.

    Unknown macros, and known ones without a value, stay as written; a value
    that itself contains ``%macro%`` is not expanded again.
    """

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in MACROS and name in values:
            return values[name]
        return match.group(0)

    return _MACRO.sub(fill, text)


class Template(Aggregate):
    """A response template, rebuilt from ``ticket-template-<id>``."""

    handles = TEMPLATE_EVENTS

    def __init__(self) -> None:
        super().__init__()
        self.id = ""
        self.name = ""
        self.subject = ""
        self.body = ""
        self.deleted = False

    @property
    def exists(self) -> bool:
        return bool(self.id) and not self.deleted

    @staticmethod
    def create(template_id: str, draft: TemplateDraft) -> list[DomainEvent]:
        check_id(template_id, "template_id")
        return [
            ResponseTemplateCreated(
                template_id=template_id,
                name=check_text(draft.name, "name", MAX_NAME, required=True),
                subject=check_text(draft.subject, "subject", MAX_SUBJECT, required=False),
                body=check_text(draft.body, "body", MAX_BODY, required=True, multiline=True),
            )
        ]

    def change(self, patch: TemplatePatch) -> list[DomainEvent]:
        self._require_exists()
        given = set(patch.model_fields_set)
        _require(given, patch, "name", "subject", "body")
        after: dict[str, str] = {}
        if "name" in given:
            after["name"] = check_text(patch.name, "name", MAX_NAME, required=True)
        if "subject" in given:
            after["subject"] = check_text(patch.subject, "subject", MAX_SUBJECT, required=False)
        if "body" in given:
            after["body"] = check_text(patch.body, "body", MAX_BODY, required=True, multiline=True)
        names: tuple[TemplateField, ...] = ("name", "subject", "body")
        changed = [n for n in names if n in after and after[n] != getattr(self, n)]
        if not changed:
            return []
        values = {name: after[name] for name in changed}
        return [
            ResponseTemplateChanged.model_validate(
                {"template_id": self.id, "changed": changed, **values}
            )
        ]

    def delete(self) -> list[DomainEvent]:
        self._require_exists()
        return [ResponseTemplateDeleted(template_id=self.id)]

    def rendered(self, values: Mapping[str, str]) -> tuple[str, str]:
        """(subject, body) with the macros filled from ``values``."""
        self._require_exists()
        return render(self.subject, values), render(self.body, values)

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, ResponseTemplateCreated):
            self.id = event.template_id
            self.name = event.name
            self.subject = event.subject
            self.body = event.body
        elif isinstance(event, ResponseTemplateChanged):
            for name in event.changed:
                setattr(self, name, getattr(event, name))
        elif isinstance(event, ResponseTemplateDeleted):
            self.deleted = True

    def _require_exists(self) -> None:
        if not self.id:
            raise NotFound("template")
        if self.deleted:
            raise NotFound(f"template {self.id} (deleted)")


# ---------------------------------------------------------------- announcements


def announcement_text(text: LocalizedText | str, language: str = "en") -> str:
    """The text to show in ``language`` (a plain string is the same in every language)."""
    return text if isinstance(text, str) else text.in_language(language)


class Announcement(Aggregate):
    """An announcement, rebuilt from ``announcement-<id>``."""

    handles = ANNOUNCEMENT_EVENTS

    def __init__(self) -> None:
        super().__init__()
        self.id = ""
        self.text: LocalizedText | str = ""
        self.starts_at: datetime | None = None
        self.ends_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.blocking = False

    @property
    def until(self) -> datetime | None:
        """When it stops being active: its end, or when staff ended it, whichever is first."""
        if self.ends_at is None or self.ended_at is None:
            return self.ends_at
        return min(self.ends_at, self.ended_at)

    def active_at(self, now: datetime) -> bool:
        until = self.until
        return self.starts_at is not None and until is not None and self.starts_at <= now < until

    @staticmethod
    def publish(announcement_id: str, draft: AnnouncementDraft, now: datetime) -> list[DomainEvent]:
        check_id(announcement_id, "announcement_id")
        if isinstance(draft.text, str):
            text: LocalizedText | str = check_text(
                draft.text, "text", MAX_ANNOUNCEMENT, required=True, multiline=True
            )
        else:
            text = check_localized(draft.text, "text", MAX_ANNOUNCEMENT, multiline=True)
        starts_at = now if draft.starts_at is None else check_aware(draft.starts_at, "starts_at")
        ends_at = check_aware(draft.ends_at, "ends_at")
        if ends_at <= starts_at:
            raise DomainError("ends_at", "must be after starts_at")
        if ends_at <= now:
            raise DomainError("ends_at", "is already past")
        return [
            AnnouncementPublished(
                announcement_id=announcement_id,
                text=text,
                starts_at=starts_at,
                ends_at=ends_at,
                blocking=draft.blocking,
            )
        ]

    def end(self, now: datetime) -> list[DomainEvent]:
        """End it now (``DELETE``); one that is over already writes nothing."""
        if not self.id:
            raise NotFound("announcement")
        until = self.until
        if until is not None and until <= now:
            return []
        return [AnnouncementEnded(announcement_id=self.id, ended_at=now)]

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, AnnouncementPublished):
            self.id = event.announcement_id
            self.text = event.text
            self.starts_at = event.starts_at
            self.ends_at = event.ends_at
            self.blocking = event.blocking
        elif isinstance(event, AnnouncementEnded):
            self.ended_at = event.ended_at


# ---------------------------------------------------------------- settings


class SupportSettings(Aggregate):
    """The support center's settings (stream ``support-settings``); defaults until changed."""

    handles = SETTINGS_EVENTS

    def __init__(self) -> None:
        super().__init__()
        self.transfer_notices_shown = 3
        self.close_after_days: int | None = 7
        self.rate_after_days: int | None = 1
        self.rating_mode: RatingMode = "ticket"
        self.unknown_senders: UnknownSenders = "open"

    def change(self, patch: SettingsPatch) -> list[DomainEvent]:
        """Set the fields given; values equal to the current ones write nothing."""
        given = set(patch.model_fields_set)
        _require(given, patch, "transfer_notices_shown", "rating_mode", "unknown_senders")
        after: dict[str, object] = {}
        if "transfer_notices_shown" in given:
            after["transfer_notices_shown"] = _in_range(
                patch.transfer_notices_shown, "transfer_notices_shown", 0, 100
            )
        if "close_after_days" in given:
            after["close_after_days"] = _in_range(
                patch.close_after_days, "close_after_days", 1, 365, nullable=True
            )
        if "rate_after_days" in given:
            after["rate_after_days"] = _in_range(
                patch.rate_after_days, "rate_after_days", 0, 365, nullable=True
            )
        if "rating_mode" in given:
            if patch.rating_mode not in ("message", "ticket"):
                raise DomainError("rating_mode", "message or ticket")
            after["rating_mode"] = patch.rating_mode
        if "unknown_senders" in given:
            if patch.unknown_senders not in ("open", "reject"):
                raise DomainError("unknown_senders", "open or reject")
            after["unknown_senders"] = patch.unknown_senders
        names: tuple[SettingsField, ...] = (
            "transfer_notices_shown",
            "close_after_days",
            "rate_after_days",
            "rating_mode",
            "unknown_senders",
        )
        changed = [n for n in names if n in after and after[n] != getattr(self, n)]
        if not changed:
            return []
        whole = {n: after.get(n, getattr(self, n)) for n in names}
        return [SupportSettingsChanged.model_validate({"changed": changed, **whole})]

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, SupportSettingsChanged):
            self.transfer_notices_shown = event.transfer_notices_shown
            self.close_after_days = event.close_after_days
            self.rate_after_days = event.rate_after_days
            self.rating_mode = event.rating_mode
            self.unknown_senders = event.unknown_senders


def _in_range(
    value: int | None, field: str, low: int, high: int, *, nullable: bool = False
) -> int | None:
    if value is None:
        if nullable:
            return None
        raise DomainError(field, "cannot be null")
    if isinstance(value, bool) or not low <= value <= high:
        raise DomainError(field, f"between {low} and {high}" + (", or null" if nullable else ""))
    return value


# ---------------------------------------------------------------- paid requests


class PaidBalance(Aggregate):
    """A client's paid requests, rebuilt from ``paid-requests-<client_id>``."""

    handles = PAID_REQUEST_EVENTS

    def __init__(self) -> None:
        super().__init__()
        self.client_id = ""
        self.balance = 0
        self.held: set[str] = set()  # tickets holding a request now

    @staticmethod
    def for_client(client_id: str) -> PaidBalance:
        balance = PaidBalance()
        balance.client_id = check_id(client_id, "client_id")
        return balance

    def credit(self, amount: int, comment: str | None = None) -> list[DomainEvent]:
        if isinstance(amount, bool) or not 1 <= amount <= MAX_CREDIT:
            raise DomainError("amount", f"between 1 and {MAX_CREDIT}")
        if self.balance + amount > MAX_BALANCE:
            raise DomainError("amount", f"the balance would exceed {MAX_BALANCE}")
        return [
            PaidRequestsCredited(
                client_id=self.client_id,
                amount=amount,
                comment=check_text(comment, "comment", MAX_COMMENT, required=False),
                balance=self.balance + amount,
            )
        ]

    def take(self, ticket_id: str) -> list[DomainEvent]:
        """One request for ``ticket_id``; nothing when it holds one already."""
        check_id(ticket_id, "ticket_id")
        if ticket_id in self.held:
            return []
        if self.balance <= 0:
            raise PaymentRequired("no_paid_requests", "the client has no paid requests left")
        return [
            PaidRequestTaken(
                client_id=self.client_id, ticket_id=ticket_id, balance=self.balance - 1
            )
        ]

    def give_back(self, ticket_id: str) -> list[DomainEvent]:
        """The request ``ticket_id`` holds comes back; nothing when it holds none."""
        check_id(ticket_id, "ticket_id")
        if ticket_id not in self.held:
            return []
        return [
            PaidRequestReturned(
                client_id=self.client_id, ticket_id=ticket_id, balance=self.balance + 1
            )
        ]

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, PaidRequestsCredited):
            self.client_id = event.client_id
            self.balance = event.balance
        elif isinstance(event, PaidRequestTaken):
            self.client_id = event.client_id
            self.balance = event.balance
            self.held.add(event.ticket_id)
        elif isinstance(event, PaidRequestReturned):
            self.client_id = event.client_id
            self.balance = event.balance
            self.held.discard(event.ticket_id)
