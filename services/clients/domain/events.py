"""Events of the clients context, published on ``clients.events``.

Streams: ``client-<id>``, ``client-group-<id>``, ``project-<id>``,
``message-<id>`` (one send to many clients), ``company-<id>``.

Personal data (DESIGN §3) is sealed with the client's own key
(``shared.privacy.shredding``): each model lists its ``personal_fields`` and names its
subject in ``subject_field``. Those fields are ``str | None`` because a sealed
value is a string and an erased one opens to None. Ids, countries, statuses,
counts and penalty points are never sealed: reports keep them after erasure.

Changes are one event per command carrying what changed: ``changed`` lists the
fields set, every other optional field is None ("unchanged"), since None is
itself a value for some fields (``company_name``: none).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from shared.domain.events import DomainEvent, EventRegistry

registry = EventRegistry()

CustomerStatus = Literal["company", "sole_proprietor", "individual"]
Characteristic = Literal["normal", "good", "conflict"]
NoReactionAction = Literal["move_to_active", "suspend_services"]

CLIENT_PERSONAL = (
    "login",
    "email",
    "company_name",
    "contact_person",
    "registration_ip",
    "phone",
    "note",
    "referral_source",
)

ClientField = Literal[
    "email",
    "country",
    "customer_status",
    "company_name",
    "contact_person",
    "project_id",
    "language",
    "phone",
    "phone_verified",
    "note",
    "referral_source",
    "characteristic",
    "referrer_id",
    "partner_program",
    "groups",
    "products",
]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _ClientEvent(DomainEvent):
    """An event about one client: the client is the subject of its sealed fields."""

    subject_field: ClassVar[str] = "client_id"
    personal_fields: ClassVar[tuple[str, ...]] = ()
    client_id: str


# ---------------------------------------------------------------- the client card


@registry.register
class ClientRegistered(_ClientEvent):
    event_type = "ClientRegistered"
    personal_fields = CLIENT_PERSONAL
    login: str | None
    email: str | None
    country: str
    customer_status: CustomerStatus
    company_name: str | None = None
    contact_person: str | None = None
    project_id: str | None = None
    registered_at: datetime
    registration_ip: str | None = None
    language: str = "en"
    phone: str | None = None
    phone_verified: bool = False
    note: str | None = None
    referral_source: str | None = None
    characteristic: Characteristic = "normal"
    referrer_id: str | None = None
    partner_program: str | None = None
    groups: list[str] = []
    products: list[str] = []


@registry.register
class ClientChanged(_ClientEvent):
    event_type = "ClientChanged"
    personal_fields = CLIENT_PERSONAL
    changed: list[ClientField]
    email: str | None = None
    country: str | None = None
    customer_status: CustomerStatus | None = None
    company_name: str | None = None
    contact_person: str | None = None
    project_id: str | None = None
    language: str | None = None
    phone: str | None = None
    phone_verified: bool | None = None
    note: str | None = None
    referral_source: str | None = None
    characteristic: Characteristic | None = None
    referrer_id: str | None = None
    partner_program: str | None = None
    groups: list[str] | None = None
    products: list[str] | None = None
    # Kept for the schema: a changed login would be sealed like the rest.
    login: str | None = None


@registry.register
class ClientPasswordReset(_ClientEvent):
    """The client's password was set by staff (the password itself is only at identity)."""

    event_type = "ClientPasswordReset"


@registry.register
class ClientErased(_ClientEvent):
    """Deleted on request: the key is destroyed, every sealed field of the client is noise."""

    event_type = "ClientErased"


# ---------------------------------------------------------------- messages and abuse notices


class Attachment(_Value):
    """A file sent with a message; its bytes stay in the service's database."""

    attachment_id: str
    filename: str
    content_type: str
    size: int
    sha256: str


class Violation(_Value):
    """An abuse notice: what happens if the client does not react by the deadline."""

    deadline: datetime
    on_no_reaction: NoReactionAction
    penalty_points: int = 0
    comment: str = ""


@registry.register
class ClientMessaged(_ClientEvent):
    """One message to one client; the support center opens a thread for it."""

    event_type = "ClientMessaged"
    personal_fields = ("subject", "text")
    message_id: str
    category_id: str | None = None
    subject: str | None
    text: str | None
    language: str
    forbid_replies: bool = False
    assign_replies_to: str | None = None  # a staff id
    attachments: list[Attachment] = []
    violation: Violation | None = None


@registry.register
class MessageSent(DomainEvent):
    """The send as a whole (stream ``message-<id>``): how many got it, and why others did not."""

    event_type = "MessageSent"
    message_id: str
    recipients: int
    skipped_for_language: int
    category_id: str | None = None
    violation: bool = False


@registry.register
class PenaltyPointsAdded(_ClientEvent):
    event_type = "PenaltyPointsAdded"
    message_id: str
    points: int


@registry.register
class AbuseNoticeExpired(_ClientEvent):
    """The notifier reported the deadline passed without a reaction; the action was taken."""

    event_type = "AbuseNoticeExpired"
    message_id: str
    action: NoReactionAction


@registry.register
class ClientServicesSuspended(_ClientEvent):
    event_type = "ClientServicesSuspended"
    reason: Literal["abuse_notice", "staff"]
    message_id: str | None = None


@registry.register
class ClientServicesResumed(_ClientEvent):
    event_type = "ClientServicesResumed"


# ---------------------------------------------------------------- impersonation


@registry.register
class ClientImpersonated(_ClientEvent):
    """A staff member logged in as this client (the session's events name both)."""

    event_type = "ClientImpersonated"
    staff_id: str
    session_id: str


# ---------------------------------------------------------------- groups and projects


@registry.register
class ClientGroupCreated(DomainEvent):
    event_type = "ClientGroupCreated"
    group_id: str
    name: str


@registry.register
class ClientGroupRenamed(DomainEvent):
    event_type = "ClientGroupRenamed"
    group_id: str
    name: str


@registry.register
class ClientGroupDeleted(DomainEvent):
    event_type = "ClientGroupDeleted"
    group_id: str


@registry.register
class ProjectCreated(DomainEvent):
    """A project (provider): clients, departments and ticket categories belong to one."""

    event_type = "ProjectCreated"
    project_id: str
    name: str
    description: str = ""


@registry.register
class ProjectChanged(DomainEvent):
    event_type = "ProjectChanged"
    project_id: str
    name: str | None = None
    description: str | None = None


@registry.register
class ProjectDeleted(DomainEvent):
    event_type = "ProjectDeleted"
    project_id: str


from services.clients.domain import company_events  # noqa: E402, F401
