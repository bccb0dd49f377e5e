"""Events of companies, their contacts and equipment (stream ``company-<id>``).

Registered into the clients context's ``registry`` and published on
``clients.events`` like the rest of it. One stream holds a company, its
members, its client manager, its contacts and its equipment tree: every rule
(one manager who is a member, a tree without cycles) is about one company, so
one aggregate decides them all with one expected version.

Contacts are people outside the client accounts: their name, e-mail, phone
and messenger id are personal data, sealed with the contact's own key
(``subject_field = "contact_id"``, see ``shared.privacy.shredding``). Removing a
contact destroys that key, so those fields open to None in every replay.
Those fields are therefore ``str | None`` even where the command requires
them. ``ContactRemoved`` carries nothing personal.

Changes carry what changed: ``changed`` lists the fields set, every other
optional field is None ("unchanged"), since None is itself a value for some
fields (a contact's phone, an item's parent).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from services.clients.domain.events import registry
from shared.domain.events import DomainEvent

ContactField = Literal[
    "name", "email", "email_generated", "phone", "messenger", "messenger_id", "notifications"
]
EquipmentField = Literal["name", "type", "serial", "parent_id"]

CONTACT_PERSONAL = ("name", "email", "phone", "messenger_id")


class CompanyEvent(DomainEvent):
    """Base of every event of a company stream."""

    company_id: str


class _ContactEvent(CompanyEvent):
    """An event about one contact: the contact is the subject of its sealed fields."""

    subject_field: ClassVar[str] = "contact_id"
    personal_fields: ClassVar[tuple[str, ...]] = ()
    contact_id: str


# ---------------------------------------------------------------- the company


@registry.register
class CompanyCreated(CompanyEvent):
    event_type = "CompanyCreated"
    name: str


@registry.register
class CompanyRenamed(CompanyEvent):
    event_type = "CompanyRenamed"
    name: str


@registry.register
class CompanyMemberAdded(CompanyEvent):
    """A client user joined the company (a client belongs to at most one)."""

    event_type = "CompanyMemberAdded"
    client_id: str


@registry.register
class CompanyMemberRemoved(CompanyEvent):
    """A client user left; a manager who leaves is unassigned first (``CompanyManagerAssigned``)."""

    event_type = "CompanyMemberRemoved"
    client_id: str


@registry.register
class CompanyManagerAssigned(CompanyEvent):
    """The client manager (sees the company's tickets) is now ``client_id``; None: nobody.

    ``previous_id`` names who stopped being the manager, so a consumer can take
    that right away without keeping the company's history.
    """

    event_type = "CompanyManagerAssigned"
    client_id: str | None
    previous_id: str | None = None


@registry.register
class CompanyDeleted(CompanyEvent):
    """The end of the company; its members and contacts were removed by events just before."""

    event_type = "CompanyDeleted"


# ---------------------------------------------------------------- contacts


@registry.register
class ContactAdded(_ContactEvent):
    """A contact person of the company.

    ``email_generated``: the contact came from a messenger without an e-mail,
    so ``email`` is ``<messenger>.<messenger_id>@contacts.invalid`` (never delivered).
    """

    event_type = "ContactAdded"
    personal_fields = CONTACT_PERSONAL
    name: str | None
    email: str | None
    email_generated: bool = False
    phone: str | None = None
    messenger: str | None = None
    messenger_id: str | None = None
    notifications: bool = True


@registry.register
class ContactChanged(_ContactEvent):
    """Only the fields in ``changed`` are set; the others are None and mean unchanged."""

    event_type = "ContactChanged"
    personal_fields = CONTACT_PERSONAL
    changed: list[ContactField]
    name: str | None = None
    email: str | None = None
    email_generated: bool | None = None
    phone: str | None = None
    messenger: str | None = None
    messenger_id: str | None = None
    notifications: bool | None = None


@registry.register
class ContactRemoved(_ContactEvent):
    """The contact is gone and its key destroyed: its earlier events open to nothing."""

    event_type = "ContactRemoved"


# ---------------------------------------------------------------- equipment


@registry.register
class EquipmentAdded(CompanyEvent):
    """An item of the company's equipment tree; ``parent_id`` is another item of it, or None."""

    event_type = "EquipmentAdded"
    item_id: str
    name: str
    type: str | None = None
    serial: str | None = None
    parent_id: str | None = None


@registry.register
class EquipmentChanged(CompanyEvent):
    """Only the fields in ``changed`` are set; the others are None and mean unchanged."""

    event_type = "EquipmentChanged"
    item_id: str
    changed: list[EquipmentField]
    name: str | None = None
    type: str | None = None
    serial: str | None = None
    parent_id: str | None = None


@registry.register
class EquipmentRemoved(CompanyEvent):
    """An item without children left the tree."""

    event_type = "EquipmentRemoved"
    item_id: str


COMPANY_EVENTS: frozenset[str] = frozenset(
    model.event_type
    for model in (
        CompanyCreated,
        CompanyRenamed,
        CompanyMemberAdded,
        CompanyMemberRemoved,
        CompanyManagerAssigned,
        CompanyDeleted,
        ContactAdded,
        ContactChanged,
        ContactRemoved,
        EquipmentAdded,
        EquipmentChanged,
        EquipmentRemoved,
    )
)
"""Every event type of a company stream (what the aggregate and the read model read)."""
