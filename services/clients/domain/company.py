"""The company: client users grouped together, their manager, contacts and equipment tree.

The aggregate takes commands and returns events; it never does I/O. What it
must know of the world (does a client exist, is it already in another
company) the application layer looks up and passes in.

Rules:

* a name is required (at most 200 characters);
* members are client ids; a client belongs to at most one company (the
  application layer checks the other companies in the read model);
* at most one client manager, who must be a member; a manager who leaves is
  unassigned in the same append;
* contacts need an e-mail: given, it must be a valid address (pydantic's
  ``EmailStr``); absent, a contact from a messenger gets
  ``<messenger>.<messenger_id>@contacts.invalid`` (``.invalid`` never
  delivers, RFC 2606), and it follows the messenger id while it stays generated;
* equipment items form a tree inside the company: a parent is an item of the
  same company, never the item itself or one of its descendants, at most
  ``MAX_DEPTH`` levels; an item with children cannot be removed (409
  ``has_children``);
* deleting a company removes its members and contacts first, by events, so
  every consumer (identity, tickets) learns who left and whose data to forget;
* a deleted company takes no further command.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Self

from pydantic import BaseModel, ConfigDict, EmailStr, TypeAdapter, ValidationError

from services.clients.domain.company_events import (
    COMPANY_EVENTS,
    CompanyCreated,
    CompanyDeleted,
    CompanyManagerAssigned,
    CompanyMemberAdded,
    CompanyMemberRemoved,
    CompanyRenamed,
    ContactAdded,
    ContactChanged,
    ContactField,
    ContactRemoved,
    EquipmentAdded,
    EquipmentChanged,
    EquipmentField,
    EquipmentRemoved,
)
from shared.domain.aggregate import Aggregate, Conflict, DomainError, NotFound
from shared.domain.events import DomainEvent

MAX_ID = 64  # read models key clients, contacts and items with String(64)
MAX_NAME = 200
MAX_TYPE = 100
MAX_SERIAL = 100
MAX_MESSENGER_ID = 200
MAX_LOCAL_PART = 64  # RFC 5321
# Guards on one stream's size: the aggregate is loaded whole for every command.
MAX_MEMBERS = 5000
MAX_CONTACTS = 500
MAX_EQUIPMENT = 2000
MAX_DEPTH = 32

GENERATED_DOMAIN = "contacts.invalid"

_MESSENGER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_PHONE = re.compile(r"^\+?[0-9 ()\-.]{3,40}$")
_NOT_ATOM = re.compile(r"[^a-z0-9_-]+")
_EMAIL = TypeAdapter(EmailStr)


def stream_name(company_id: str) -> str:
    return f"company-{company_id}"


# ---------------------------------------------------------------- commands


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CompanyPatch(_Command):
    """``PATCH /companies/{id}``: only the fields given (``model_fields_set``) change."""

    name: str | None = None


class ContactDraft(_Command):
    """A new contact; without ``email``, ``messenger`` and ``messenger_id`` are required."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    messenger: str | None = None
    messenger_id: str | None = None
    notifications: bool = True


class ContactPatch(_Command):
    """A change of a contact: only the fields given (``model_fields_set``) change.

    ``email: null`` means "no real address": one is generated from the messenger.
    """

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    messenger: str | None = None
    messenger_id: str | None = None
    notifications: bool | None = None


class EquipmentDraft(_Command):
    name: str
    type: str | None = None
    serial: str | None = None
    parent_id: str | None = None


class EquipmentPatch(_Command):
    """A change of an item: only the fields given change; ``parent_id: null`` makes it a root."""

    name: str | None = None
    type: str | None = None
    serial: str | None = None
    parent_id: str | None = None


# ---------------------------------------------------------------- field rules


def _text(value: str | None, field: str, limit: int, *, required: bool) -> str | None:
    """Stripped text of at most ``limit`` characters; empty means None unless required."""
    clean = (value or "").strip()
    if not clean:
        if required:
            raise DomainError(field, "required")
        return None
    if len(clean) > limit:
        raise DomainError(field, f"at most {limit} characters")
    if any(ord(ch) < 32 for ch in clean):
        raise DomainError(field, "no control characters")
    return clean


def check_name(name: str | None, field: str = "name") -> str:
    clean = _text(name, field, MAX_NAME, required=True)
    assert clean is not None
    return clean


def check_id(value: str, field: str) -> str:
    if not (0 < len(value.strip()) <= MAX_ID) or value != value.strip():
        raise DomainError(field, f"an id of 1-{MAX_ID} characters")
    return value


def check_email(email: str) -> str:
    """A valid address (pydantic ``EmailStr``), normalised as it normalises it."""
    try:
        return str(_EMAIL.validate_python(email.strip()))
    except ValidationError as error:
        message = error.errors()[0]["msg"]
        raise DomainError("email", message) from None


def check_phone(phone: str | None) -> str | None:
    clean = _text(phone, "phone", 40, required=False)
    if clean is not None and (not _PHONE.match(clean) or sum(ch.isdigit() for ch in clean) < 3):
        raise DomainError("phone", "digits, spaces and + ( ) - . only; at least 3 digits")
    return clean


def check_messenger(messenger: str | None) -> str | None:
    """A messenger's short name (``telegram``, ``whatsapp``), lower-cased."""
    clean = _text(messenger, "messenger", 32, required=False)
    if clean is None:
        return None
    clean = clean.lower()
    if not _MESSENGER.match(clean):
        raise DomainError("messenger", "a short name: Latin letters, digits, _ or -")
    return clean


def check_messenger_id(messenger_id: str | None) -> str | None:
    return _text(messenger_id, "messenger_id", MAX_MESSENGER_ID, required=False)


def generated_email(messenger: str, messenger_id: str) -> str:
    """``<messenger>.<messenger_id>@contacts.invalid``, normalised into a valid dot-atom.

    Lower case; every run of characters other than Latin letters, digits,
    ``_`` and ``-`` becomes one ``-``. An id with nothing usable left, or one
    too long for a local part, is replaced by a hash of it, so the address
    stays stable for the same id and differs between ids.
    """
    atom = _NOT_ATOM.sub("-", messenger_id.strip().lower()).strip("-")
    if not atom or len(messenger) + 1 + len(atom) > MAX_LOCAL_PART:
        atom = "id-" + hashlib.sha256(messenger_id.strip().encode()).hexdigest()[:24]
    return f"{messenger}.{atom}@{GENERATED_DOMAIN}"


def _messenger_pair(messenger: str | None, messenger_id: str | None) -> None:
    """A messenger and its id come together, or not at all."""
    if messenger is not None and messenger_id is None:
        raise DomainError("messenger_id", "required with messenger")
    if messenger_id is not None and messenger is None:
        raise DomainError("messenger", "required with messenger_id")


# ---------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class Contact:
    contact_id: str
    name: str | None
    email: str | None
    email_generated: bool
    phone: str | None
    messenger: str | None
    messenger_id: str | None
    notifications: bool


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    name: str
    type: str | None
    serial: str | None
    parent_id: str | None


class Company(Aggregate):
    """A company, rebuilt from its stream ``company-<id>``."""

    handles = COMPANY_EVENTS

    def __init__(self) -> None:
        super().__init__()
        self.id = ""
        self.name = ""
        self.members: dict[str, None] = {}  # a dict keeps the order clients joined in
        self.manager_id: str | None = None
        self.contacts: dict[str, Contact] = {}
        self.removed_contacts: set[str] = set()  # their keys must be destroyed
        self.equipment: dict[str, Item] = {}
        self.deleted = False

    @property
    def exists(self) -> bool:
        return bool(self.id) and not self.deleted

    # ------------------------------------------------------------ the company

    @staticmethod
    def create(company_id: str, name: str) -> list[DomainEvent]:
        check_id(company_id, "company_id")
        return [CompanyCreated(company_id=company_id, name=check_name(name))]

    def change(self, patch: CompanyPatch) -> list[DomainEvent]:
        """Rename it when a new name is given; the same name writes nothing."""
        self._require_exists()
        if "name" not in patch.model_fields_set:
            return []
        clean = check_name(patch.name)
        return [] if clean == self.name else [CompanyRenamed(company_id=self.id, name=clean)]

    def delete(self) -> list[DomainEvent]:
        """Remove the members (the manager first) and the contacts, then the company."""
        self._require_exists()
        events: list[DomainEvent] = []
        if self.manager_id is not None:
            events.append(self._manager_event(None))
        events += [CompanyMemberRemoved(company_id=self.id, client_id=c) for c in self.members]
        events += [ContactRemoved(company_id=self.id, contact_id=c) for c in self.contacts]
        events.append(CompanyDeleted(company_id=self.id))
        return events

    # ------------------------------------------------------------ members and manager

    def add_member(
        self,
        client_id: str,
        *,
        manager: bool = False,
        client_exists: bool = True,
        other_company: str | None = None,
    ) -> list[DomainEvent]:
        """Add a client (and make them the manager); nothing when it is so already.

        ``client_exists``: the client is known to the clients context;
        ``other_company``: the company the client already belongs to, if another.
        """
        self._require_exists()
        check_id(client_id, "client_id")
        events: list[DomainEvent] = []
        if client_id not in self.members:
            if not client_exists:
                raise DomainError("client_id", f"no client {client_id!r}")
            if other_company is not None and other_company != self.id:
                raise Conflict(
                    "client_in_other_company",
                    f"client {client_id} already belongs to company {other_company}",
                )
            if len(self.members) >= MAX_MEMBERS:
                raise Conflict("limit_reached", f"a company has at most {MAX_MEMBERS} members")
            events.append(CompanyMemberAdded(company_id=self.id, client_id=client_id))
        if manager and self.manager_id != client_id:
            events.append(self._manager_event(client_id))
        return events

    def remove_member(self, client_id: str) -> list[DomainEvent]:
        """The client leaves; a manager is unassigned first."""
        self._require_exists()
        if client_id not in self.members:
            raise NotFound(f"member {client_id} of company {self.id}")
        events: list[DomainEvent] = []
        if self.manager_id == client_id:
            events.append(self._manager_event(None))
        events.append(CompanyMemberRemoved(company_id=self.id, client_id=client_id))
        return events

    def assign_manager(self, client_id: str | None) -> list[DomainEvent]:
        """Make a member the client manager (None: nobody); nothing when it is so already."""
        self._require_exists()
        if client_id is not None and client_id not in self.members:
            raise DomainError("client_id", f"{client_id!r} is not a member of the company")
        if client_id == self.manager_id:
            return []
        return [self._manager_event(client_id)]

    def _manager_event(self, client_id: str | None) -> CompanyManagerAssigned:
        return CompanyManagerAssigned(
            company_id=self.id, client_id=client_id, previous_id=self.manager_id
        )

    # ------------------------------------------------------------ contacts

    def add_contact(self, contact_id: str, draft: ContactDraft) -> list[DomainEvent]:
        self._require_exists()
        check_id(contact_id, "contact_id")
        if contact_id in self.contacts or contact_id in self.removed_contacts:
            raise Conflict("duplicate_id", f"contact {contact_id} exists or existed")
        if len(self.contacts) >= MAX_CONTACTS:
            raise Conflict("limit_reached", f"a company has at most {MAX_CONTACTS} contacts")
        name = _text(draft.name, "name", MAX_NAME, required=False)
        phone = check_phone(draft.phone)
        messenger = check_messenger(draft.messenger)
        messenger_id = check_messenger_id(draft.messenger_id)
        _messenger_pair(messenger, messenger_id)
        email, generated = self._email(draft.email, messenger, messenger_id, current=None)
        return [
            ContactAdded(
                company_id=self.id,
                contact_id=contact_id,
                name=name,
                email=email,
                email_generated=generated,
                phone=phone,
                messenger=messenger,
                messenger_id=messenger_id,
                notifications=draft.notifications,
            )
        ]

    def change_contact(self, contact_id: str, patch: ContactPatch) -> list[DomainEvent]:
        """Change the fields given; values equal to the current ones write nothing."""
        current = self._contact(contact_id)
        given = patch.model_fields_set
        if "notifications" in given and patch.notifications is None:
            raise DomainError("notifications", "cannot be null")
        after = current
        if "name" in given:
            after = replace(after, name=_text(patch.name, "name", MAX_NAME, required=False))
        if "phone" in given:
            after = replace(after, phone=check_phone(patch.phone))
        if "messenger" in given:
            after = replace(after, messenger=check_messenger(patch.messenger))
        if "messenger_id" in given:
            after = replace(after, messenger_id=check_messenger_id(patch.messenger_id))
        if "notifications" in given and patch.notifications is not None:
            after = replace(after, notifications=patch.notifications)
        _messenger_pair(after.messenger, after.messenger_id)
        email: str | None
        if "email" in given:
            email, generated = self._email(
                patch.email, after.messenger, after.messenger_id, current=current
            )
        elif current.email_generated:
            # A generated address follows the messenger id it was made from.
            email, generated = self._email(None, after.messenger, after.messenger_id, current=None)
        else:
            email, generated = current.email, False
        after = replace(after, email=email, email_generated=generated)
        changed: list[ContactField] = [
            name
            for name in (
                "name",
                "email",
                "email_generated",
                "phone",
                "messenger",
                "messenger_id",
                "notifications",
            )
            if getattr(after, name) != getattr(current, name)
        ]
        if not changed:
            return []
        values = {name: getattr(after, name) for name in changed}
        return [
            ContactChanged(company_id=self.id, contact_id=contact_id, changed=changed, **values)
        ]

    def remove_contact(self, contact_id: str) -> list[DomainEvent]:
        self._contact(contact_id)
        return [ContactRemoved(company_id=self.id, contact_id=contact_id)]

    @staticmethod
    def _email(
        given: str | None,
        messenger: str | None,
        messenger_id: str | None,
        *,
        current: Contact | None,
    ) -> tuple[str, bool]:
        """The contact's address and whether it was generated."""
        if given is not None and given.strip():
            if current is not None and given.strip() == current.email:
                # Sent back as read: not a new address to check (a generated one
                # would not pass), and a generated one keeps following the messenger.
                if not current.email_generated:
                    return current.email, False
            else:
                return check_email(given), False
        if messenger is None or messenger_id is None:
            raise DomainError("email", "required, unless messenger and messenger_id are given")
        return generated_email(messenger, messenger_id), True

    def _contact(self, contact_id: str) -> Contact:
        self._require_exists()
        contact = self.contacts.get(contact_id)
        if contact is None:
            removed = " (removed)" if contact_id in self.removed_contacts else ""
            raise NotFound(f"contact {contact_id}{removed} of company {self.id}")
        return contact

    # ------------------------------------------------------------ equipment

    def add_equipment(self, item_id: str, draft: EquipmentDraft) -> list[DomainEvent]:
        self._require_exists()
        check_id(item_id, "item_id")
        if item_id in self.equipment:
            raise Conflict("duplicate_id", f"item {item_id} exists")
        if len(self.equipment) >= MAX_EQUIPMENT:
            raise Conflict("limit_reached", f"a company has at most {MAX_EQUIPMENT} items")
        parent_id = self._check_parent(item_id, draft.parent_id, height=1)
        return [
            EquipmentAdded(
                company_id=self.id,
                item_id=item_id,
                name=check_name(draft.name),
                type=_text(draft.type, "type", MAX_TYPE, required=False),
                serial=_text(draft.serial, "serial", MAX_SERIAL, required=False),
                parent_id=parent_id,
            )
        ]

    def change_equipment(self, item_id: str, patch: EquipmentPatch) -> list[DomainEvent]:
        """Change the fields given; a new parent may not be the item or below it."""
        current = self._item(item_id)
        given = patch.model_fields_set
        after = current
        if "name" in given:
            after = replace(after, name=check_name(patch.name))
        if "type" in given:
            after = replace(after, type=_text(patch.type, "type", MAX_TYPE, required=False))
        if "serial" in given:
            after = replace(after, serial=_text(patch.serial, "serial", MAX_SERIAL, required=False))
        if "parent_id" in given and patch.parent_id != current.parent_id:
            parent_id = self._check_parent(item_id, patch.parent_id, height=self._height(item_id))
            after = replace(after, parent_id=parent_id)
        changed: list[EquipmentField] = [
            name
            for name in ("name", "type", "serial", "parent_id")
            if getattr(after, name) != getattr(current, name)
        ]
        if not changed:
            return []
        changes = {name: getattr(after, name) for name in changed}
        return [EquipmentChanged(company_id=self.id, item_id=item_id, changed=changed, **changes)]

    def remove_equipment(self, item_id: str) -> list[DomainEvent]:
        self._item(item_id)
        children = self.children(item_id)
        if children:
            raise Conflict(
                "has_children",
                f"item {item_id} has {len(children)} child item(s); move or remove them first",
            )
        return [EquipmentRemoved(company_id=self.id, item_id=item_id)]

    def children(self, item_id: str) -> list[str]:
        return [i.item_id for i in self.equipment.values() if i.parent_id == item_id]

    def _check_parent(self, item_id: str, parent_id: str | None, *, height: int) -> str | None:
        """``parent_id`` if the item may hang there: an item of this company, not below itself.

        ``height``: levels of the subtree that moves (1 for a leaf).
        """
        if parent_id is None:
            return None
        if parent_id not in self.equipment:
            raise DomainError("parent_id", f"no item {parent_id!r} in this company")
        depth = 1
        cursor: str | None = parent_id
        while cursor is not None:
            if cursor == item_id:
                raise DomainError("parent_id", "an item cannot be placed inside itself")
            cursor = self.equipment[cursor].parent_id
            depth += 1
        if depth - 1 + height > MAX_DEPTH:
            raise DomainError("parent_id", f"the tree may be at most {MAX_DEPTH} levels deep")
        return parent_id

    def _height(self, item_id: str) -> int:
        """Levels of the subtree under (and with) ``item_id``."""
        below: dict[str, list[str]] = {}
        for item in self.equipment.values():
            if item.parent_id is not None:
                below.setdefault(item.parent_id, []).append(item.item_id)
        height, level = 0, [item_id]
        while level:
            height += 1
            level = [child for parent in level for child in below.get(parent, [])]
        return height

    def _item(self, item_id: str) -> Item:
        self._require_exists()
        item = self.equipment.get(item_id)
        if item is None:
            raise NotFound(f"item {item_id} of company {self.id}")
        return item

    # ------------------------------------------------------------ state

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, CompanyCreated):
            self.id = event.company_id
            self.name = event.name
        elif isinstance(event, CompanyRenamed):
            self.name = event.name
        elif isinstance(event, CompanyMemberAdded):
            self.members[event.client_id] = None
        elif isinstance(event, CompanyMemberRemoved):
            self.members.pop(event.client_id, None)
        elif isinstance(event, CompanyManagerAssigned):
            self.manager_id = event.client_id
        elif isinstance(event, CompanyDeleted):
            self.deleted = True
        elif isinstance(event, ContactAdded):
            self.contacts[event.contact_id] = Contact(
                contact_id=event.contact_id,
                name=event.name,
                email=event.email,
                email_generated=event.email_generated,
                phone=event.phone,
                messenger=event.messenger,
                messenger_id=event.messenger_id,
                notifications=event.notifications,
            )
        elif isinstance(event, ContactChanged):
            contact = self.contacts.get(event.contact_id)
            if contact is not None:
                values = {name: getattr(event, name) for name in event.changed}
                self.contacts[event.contact_id] = replace(contact, **values)
        elif isinstance(event, ContactRemoved):
            self.contacts.pop(event.contact_id, None)
            self.removed_contacts.add(event.contact_id)
        elif isinstance(event, EquipmentAdded):
            self.equipment[event.item_id] = Item(
                item_id=event.item_id,
                name=event.name,
                type=event.type,
                serial=event.serial,
                parent_id=event.parent_id,
            )
        elif isinstance(event, EquipmentChanged):
            item = self.equipment.get(event.item_id)
            if item is not None:
                changes = {name: getattr(event, name) for name in event.changed}
                self.equipment[event.item_id] = replace(item, **changes)
        elif isinstance(event, EquipmentRemoved):
            self.equipment.pop(event.item_id, None)

    @classmethod
    def rebuilt(cls, events: Iterable[DomainEvent]) -> Self:
        return cls().applied(events)

    def _require_exists(self) -> None:
        if not self.id:
            raise NotFound("company")
        if self.deleted:
            raise NotFound(f"company {self.id} (deleted)")
