"""The company aggregate: members and manager, contacts and their e-mail, the equipment tree."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from email_validator import validate_email

from services.clients.domain.company import (
    MAX_DEPTH,
    MAX_NAME,
    Company,
    CompanyPatch,
    ContactDraft,
    ContactPatch,
    EquipmentDraft,
    EquipmentPatch,
    generated_email,
    stream_name,
)
from services.clients.domain.company_events import (
    COMPANY_EVENTS,
    CompanyDeleted,
    CompanyManagerAssigned,
    CompanyMemberAdded,
    CompanyMemberRemoved,
    CompanyRenamed,
    ContactAdded,
    ContactChanged,
    ContactRemoved,
    EquipmentChanged,
    EquipmentRemoved,
)
from services.clients.domain.events import registry
from shared.domain.aggregate import Conflict, DomainError, NotFound
from shared.domain.events import Actor, DomainEvent, RecordedEvent
from shared.privacy.shredding import personal_fields, subject_of


def company(*members: str, manager: str | None = None) -> Company:
    c = Company().applied(Company.create("co-1", "Acme"))
    for member in members:
        run(c, c.add_member(member, manager=member == manager))
    return c


def run(c: Company, events: list[DomainEvent]) -> list[DomainEvent]:
    """Apply a command's events, as the application layer does after appending them."""
    c.applied(events)
    return events


# ---------------------------------------------------------------- the company


def test_create_and_rename() -> None:
    c = Company().applied(Company.create("co-1", "  Acme Hosting "))
    assert (c.id, c.name, c.version) == ("co-1", "Acme Hosting", 1)
    assert stream_name("co-1") == "company-co-1"
    assert c.change(CompanyPatch(name="Acme Hosting")) == []
    assert c.change(CompanyPatch()) == []
    assert c.change(CompanyPatch(name="Acme")) == [CompanyRenamed(company_id="co-1", name="Acme")]


@pytest.mark.parametrize("name", ["", "   ", "x" * (MAX_NAME + 1), "bad\x00name", None])
def test_a_name_is_required_and_bounded(name: str | None) -> None:
    with pytest.raises(DomainError) as error:
        Company.create("co-1", name)  # type: ignore[arg-type]
    assert error.value.field == "name"
    with pytest.raises(DomainError) as error:
        company().change(CompanyPatch(name=name))
    assert error.value.field == "name"


def test_a_deleted_company_takes_no_command() -> None:
    c = company("cl-1", manager="cl-1")
    contact = run(c, c.add_contact("ct-1", ContactDraft(email="a@example.com")))
    assert contact
    events = c.delete()
    assert events == [
        CompanyManagerAssigned(company_id="co-1", client_id=None, previous_id="cl-1"),
        CompanyMemberRemoved(company_id="co-1", client_id="cl-1"),
        ContactRemoved(company_id="co-1", contact_id="ct-1"),
        CompanyDeleted(company_id="co-1"),
    ]
    run(c, events)
    assert not c.exists and not c.members and not c.contacts and c.manager_id is None
    assert c.removed_contacts == {"ct-1"}
    for command in (
        c.delete,
        lambda: c.change(CompanyPatch(name="x")),
        lambda: c.add_member("cl-2"),
        lambda: c.add_equipment("i-1", EquipmentDraft(name="x")),
    ):
        with pytest.raises(NotFound):
            command()
    with pytest.raises(NotFound):
        Company().delete()


# ---------------------------------------------------------------- members and manager


def test_members_join_once_and_leave() -> None:
    c = company()
    assert run(c, c.add_member("cl-1")) == [CompanyMemberAdded(company_id="co-1", client_id="cl-1")]
    assert c.add_member("cl-1") == []  # already a member: nothing
    run(c, c.add_member("cl-2"))
    assert list(c.members) == ["cl-1", "cl-2"]
    assert run(c, c.remove_member("cl-1")) == [
        CompanyMemberRemoved(company_id="co-1", client_id="cl-1")
    ]
    with pytest.raises(NotFound):
        c.remove_member("cl-1")


def test_an_unknown_client_or_one_of_another_company_cannot_join() -> None:
    c = company()
    with pytest.raises(DomainError) as error:
        c.add_member("cl-9", client_exists=False)
    assert error.value.field == "client_id"
    with pytest.raises(DomainError) as error:
        c.add_member(" ")
    assert error.value.field == "client_id"
    with pytest.raises(DomainError) as error:
        c.add_member("x" * 65)
    assert error.value.field == "client_id"
    with pytest.raises(Conflict) as conflict:
        c.add_member("cl-1", other_company="co-2")
    assert conflict.value.code == "client_in_other_company"
    assert c.add_member("cl-1", other_company="co-1")  # its own company is no obstacle


def test_the_manager_must_be_a_member() -> None:
    c = company("cl-1", "cl-2")
    with pytest.raises(DomainError) as error:
        c.assign_manager("cl-3")
    assert error.value.field == "client_id"
    assert run(c, c.assign_manager("cl-1")) == [
        CompanyManagerAssigned(company_id="co-1", client_id="cl-1", previous_id=None)
    ]
    assert c.assign_manager("cl-1") == []
    assert run(c, c.assign_manager("cl-2")) == [
        CompanyManagerAssigned(company_id="co-1", client_id="cl-2", previous_id="cl-1")
    ]
    assert run(c, c.assign_manager(None)) == [
        CompanyManagerAssigned(company_id="co-1", client_id=None, previous_id="cl-2")
    ]
    assert c.manager_id is None
    assert c.assign_manager(None) == []


def test_joining_as_manager_and_a_manager_leaving() -> None:
    c = company("cl-1", manager="cl-1")
    assert c.manager_id == "cl-1"
    # An existing member made manager: only the assignment.
    run(c, c.add_member("cl-2"))
    assert c.add_member("cl-2", manager=True) == [
        CompanyManagerAssigned(company_id="co-1", client_id="cl-2", previous_id="cl-1")
    ]
    # The manager leaves: unassigned first, in the same command.
    assert run(c, c.remove_member("cl-1")) == [
        CompanyManagerAssigned(company_id="co-1", client_id=None, previous_id="cl-1"),
        CompanyMemberRemoved(company_id="co-1", client_id="cl-1"),
    ]
    assert c.manager_id is None and list(c.members) == ["cl-2"]


# ---------------------------------------------------------------- contacts


def test_a_contact_with_its_own_email() -> None:
    c = company()
    events = run(
        c,
        c.add_contact(
            "ct-1",
            ContactDraft(name=" Ann Lee ", email="Ann.Lee@Example.COM", phone="+1 (555) 010-2030"),
        ),
    )
    assert events == [
        ContactAdded(
            company_id="co-1",
            contact_id="ct-1",
            name="Ann Lee",
            email="Ann.Lee@example.com",  # the domain normalised, as EmailStr does
            email_generated=False,
            phone="+1 (555) 010-2030",
            notifications=True,
        )
    ]
    assert c.contacts["ct-1"].email == "Ann.Lee@example.com"


@pytest.mark.parametrize(
    ("draft", "field"),
    [
        (ContactDraft(), "email"),
        (ContactDraft(email="  "), "email"),
        (ContactDraft(email="not-an-address"), "email"),
        (ContactDraft(email="a@b"), "email"),
        (ContactDraft(email="x@contacts.invalid"), "email"),  # nobody may claim the fake domain
        (ContactDraft(messenger="telegram"), "messenger_id"),
        (ContactDraft(messenger_id="12345"), "messenger"),
        (ContactDraft(messenger="tele gram", messenger_id="1"), "messenger"),
        (ContactDraft(email="a@example.com", phone="call me"), "phone"),
        (ContactDraft(email="a@example.com", phone="12"), "phone"),
        (ContactDraft(email="a@example.com", name="x" * (MAX_NAME + 1)), "name"),
        (ContactDraft(messenger="telegram", messenger_id="x" * 201), "messenger_id"),
    ],
)
def test_contact_input_is_checked(draft: ContactDraft, field: str) -> None:
    with pytest.raises(DomainError) as error:
        company().add_contact("ct-1", draft)
    assert error.value.field == field


@pytest.mark.parametrize(
    ("messenger", "messenger_id", "email"),
    [
        ("telegram", "@John_Doe", "telegram.john_doe@contacts.invalid"),
        ("WhatsApp", "+7 (999) 123-45-67", "whatsapp.7-999-123-45-67@contacts.invalid"),
        ("skype", "live:ann.lee", "skype.live-ann-lee@contacts.invalid"),
    ],
)
def test_a_contact_from_a_messenger_gets_a_generated_email(
    messenger: str, messenger_id: str, email: str
) -> None:
    c = company()
    [added] = run(
        c, c.add_contact("ct-1", ContactDraft(messenger=messenger, messenger_id=messenger_id))
    )
    assert isinstance(added, ContactAdded)
    assert (added.email, added.email_generated) == (email, True)
    assert added.messenger == messenger.lower()
    assert added.messenger_id == messenger_id.strip()
    # A syntactically valid address (the special-use domain aside).
    local, _, domain = email.partition("@")
    assert domain == "contacts.invalid"
    assert validate_email(f"{local}@example.com", check_deliverability=False)


def test_generated_addresses_of_unusable_or_long_ids_are_stable_hashes() -> None:
    cyrillic = generated_email("telegram", "Иван")
    assert cyrillic == generated_email("telegram", "Иван")
    assert cyrillic != generated_email("telegram", "Пётр")
    assert cyrillic.startswith("telegram.id-") and cyrillic.endswith("@contacts.invalid")
    long = generated_email("telegram", "a" * 200)
    assert len(long.partition("@")[0]) <= 64
    assert validate_email(long.replace(".invalid", ".example.com"), check_deliverability=False)


def test_a_given_email_wins_over_the_messenger() -> None:
    c = company()
    draft = ContactDraft(email="ann@example.com", messenger="telegram", messenger_id="ann")
    [added] = c.add_contact("ct-1", draft)
    assert isinstance(added, ContactAdded)
    assert (added.email, added.email_generated) == ("ann@example.com", False)


def test_changing_a_contact() -> None:
    c = company()
    run(c, c.add_contact("ct-1", ContactDraft(messenger="telegram", messenger_id="ann")))
    assert c.change_contact("ct-1", ContactPatch()) == []
    # The generated address, sent back as read, is no change (and not "invalid").
    assert c.change_contact("ct-1", ContactPatch(email="telegram.ann@contacts.invalid")) == []
    # It follows the messenger id while it stays generated.
    assert run(c, c.change_contact("ct-1", ContactPatch(messenger_id="ann_lee"))) == [
        ContactChanged(
            company_id="co-1",
            contact_id="ct-1",
            changed=["email", "messenger_id"],
            email="telegram.ann_lee@contacts.invalid",
            messenger_id="ann_lee",
        )
    ]
    # A real address replaces it; then the messenger may go.
    run(c, c.change_contact("ct-1", ContactPatch(email="ann@example.com")))
    assert c.contacts["ct-1"].email_generated is False
    assert run(c, c.change_contact("ct-1", ContactPatch(messenger=None, messenger_id=None)))
    assert c.contacts["ct-1"].email == "ann@example.com"
    # Without a messenger, the address cannot be dropped.
    with pytest.raises(DomainError) as error:
        c.change_contact("ct-1", ContactPatch(email=None))
    assert error.value.field == "email"
    with pytest.raises(DomainError) as error:
        c.change_contact("ct-1", ContactPatch(notifications=None))
    assert error.value.field == "notifications"
    assert run(c, c.change_contact("ct-1", ContactPatch(notifications=False, name="Ann"))) == [
        ContactChanged(
            company_id="co-1",
            contact_id="ct-1",
            changed=["name", "notifications"],
            name="Ann",
            notifications=False,
        )
    ]
    # The messenger of a generated address cannot go without a real address.
    run(c, c.add_contact("ct-2", ContactDraft(messenger="viber", messenger_id="42")))
    with pytest.raises(DomainError) as error:
        c.change_contact("ct-2", ContactPatch(messenger=None, messenger_id=None))
    assert error.value.field == "email"


def test_removing_a_contact() -> None:
    c = company()
    run(c, c.add_contact("ct-1", ContactDraft(email="a@example.com")))
    assert run(c, c.remove_contact("ct-1")) == [
        ContactRemoved(company_id="co-1", contact_id="ct-1")
    ]
    assert "ct-1" not in c.contacts and c.removed_contacts == {"ct-1"}
    commands: list[Callable[[], list[DomainEvent]]] = [
        lambda: c.remove_contact("ct-1"),
        lambda: c.change_contact("ct-1", ContactPatch(name="x")),
    ]
    for command in commands:
        with pytest.raises(NotFound, match="removed"):
            command()
    with pytest.raises(Conflict):  # an id is never reused, its key is gone
        c.add_contact("ct-1", ContactDraft(email="a@example.com"))


def test_contact_events_declare_their_personal_fields() -> None:
    for model in (ContactAdded, ContactChanged):
        assert set(personal_fields(model)) == {"name", "email", "phone", "messenger_id"}
    assert personal_fields(ContactRemoved) == ()
    event = ContactAdded(company_id="co-1", contact_id="ct-1", name="Ann", email="a@example.com")
    assert subject_of(event, ContactAdded) == "ct-1"
    # Nothing else of a company stream is personal.
    for name in COMPANY_EVENTS - {"ContactAdded", "ContactChanged"}:
        assert personal_fields(registry.model(name)) == ()


def test_an_erased_contact_still_decodes() -> None:
    """After erasure the sealed fields open to None; the events must still be valid."""
    c = company()
    c.apply(ContactAdded(company_id="co-1", contact_id="ct-1", name=None, email=None))
    c.apply(ContactChanged(company_id="co-1", contact_id="ct-1", changed=["email"], email=None))
    assert c.contacts["ct-1"].email is None


# ---------------------------------------------------------------- equipment


def tree() -> Company:
    """rack > server > disk, and a lone switch."""
    c = company()
    run(c, c.add_equipment("rack", EquipmentDraft(name="Rack A", type="rack")))
    run(c, c.add_equipment("server", EquipmentDraft(name="web-1", parent_id="rack")))
    run(
        c,
        c.add_equipment(
            "disk", EquipmentDraft(name="SSD", type="disk", serial="S3Z1", parent_id="server")
        ),
    )
    run(c, c.add_equipment("switch", EquipmentDraft(name="Switch")))
    return c


def test_items_hang_under_items_of_the_same_company() -> None:
    c = tree()
    assert c.children("rack") == ["server"]
    assert c.equipment["disk"].serial == "S3Z1"
    with pytest.raises(DomainError) as error:
        c.add_equipment("x", EquipmentDraft(name="x", parent_id="elsewhere"))
    assert error.value.field == "parent_id"
    with pytest.raises(DomainError) as error:
        c.add_equipment("x", EquipmentDraft(name=" "))
    assert error.value.field == "name"
    with pytest.raises(DomainError) as error:
        c.add_equipment("x", EquipmentDraft(name="x", serial="s" * 101))
    assert error.value.field == "serial"
    with pytest.raises(Conflict):
        c.add_equipment("rack", EquipmentDraft(name="again"))


@pytest.mark.parametrize("new_parent", ["rack", "server", "disk"])
def test_an_item_cannot_move_inside_itself(new_parent: str) -> None:
    c = tree()
    with pytest.raises(DomainError) as error:
        c.change_equipment("rack", EquipmentPatch(parent_id=new_parent))
    assert error.value.field == "parent_id"


def test_moving_and_changing_items() -> None:
    c = tree()
    assert run(c, c.change_equipment("server", EquipmentPatch(parent_id="switch"))) == [
        EquipmentChanged(
            company_id="co-1", item_id="server", changed=["parent_id"], parent_id="switch"
        )
    ]
    assert c.children("switch") == ["server"] and c.children("rack") == []
    # Now the rack may go under the disk: no cycle any more.
    assert run(c, c.change_equipment("rack", EquipmentPatch(parent_id="disk")))
    assert run(c, c.change_equipment("rack", EquipmentPatch(parent_id=None)))
    assert c.equipment["rack"].parent_id is None
    assert c.change_equipment("disk", EquipmentPatch(name="SSD", parent_id="server")) == []
    assert run(c, c.change_equipment("disk", EquipmentPatch(type=None, serial=""))) == [
        EquipmentChanged(company_id="co-1", item_id="disk", changed=["type", "serial"])
    ]
    with pytest.raises(DomainError) as error:
        c.change_equipment("disk", EquipmentPatch(name=None))
    assert error.value.field == "name"
    with pytest.raises(NotFound):
        c.change_equipment("nothing", EquipmentPatch(name="x"))


def test_an_item_with_children_cannot_be_removed() -> None:
    c = tree()
    with pytest.raises(Conflict) as conflict:
        c.remove_equipment("server")
    assert conflict.value.code == "has_children"
    assert run(c, c.remove_equipment("disk")) == [
        EquipmentRemoved(company_id="co-1", item_id="disk")
    ]
    assert run(c, c.remove_equipment("server"))
    with pytest.raises(NotFound):
        c.remove_equipment("server")


def test_the_tree_has_a_depth_limit() -> None:
    c = company()
    parent: str | None = None
    for level in range(MAX_DEPTH):
        run(c, c.add_equipment(f"i{level}", EquipmentDraft(name="x", parent_id=parent)))
        parent = f"i{level}"
    with pytest.raises(DomainError) as error:
        c.add_equipment("deep", EquipmentDraft(name="x", parent_id=parent))
    assert error.value.field == "parent_id"
    # A two-level subtree may not move under the last but one level either.
    run(c, c.add_equipment("top", EquipmentDraft(name="x")))
    run(c, c.add_equipment("leaf", EquipmentDraft(name="x", parent_id="top")))
    with pytest.raises(DomainError):
        c.change_equipment("top", EquipmentPatch(parent_id=f"i{MAX_DEPTH - 2}"))
    assert c.change_equipment("top", EquipmentPatch(parent_id=f"i{MAX_DEPTH - 3}"))


# ---------------------------------------------------------------- events


def test_a_company_rebuilds_from_its_encoded_events() -> None:
    c = Company()
    history = run(c, Company.create("co-1", "Acme"))
    history += run(c, c.add_member("cl-1", manager=True))
    history += run(c, c.add_member("cl-2"))
    history += run(c, c.add_contact("ct-1", ContactDraft(messenger="telegram", messenger_id="a")))
    history += run(c, c.add_contact("ct-2", ContactDraft(email="b@example.com", phone="123")))
    history += run(c, c.change_contact("ct-2", ContactPatch(name="Bo", notifications=False)))
    history += run(c, c.remove_contact("ct-1"))
    history += run(c, c.add_equipment("rack", EquipmentDraft(name="Rack")))
    history += run(c, c.add_equipment("srv", EquipmentDraft(name="web", parent_id="rack")))
    history += run(c, c.change_equipment("srv", EquipmentPatch(serial="S1", parent_id=None)))
    history += run(c, c.remove_equipment("rack"))
    recorded = [
        RecordedEvent(
            position=i + 1,
            stream="company-co-1",
            stream_version=i + 1,
            event_id=uuid.uuid4(),
            type=new.type,
            schema_version=new.schema_version,
            occurred_at=datetime.now(UTC),
            correlation_id=None,
            causation_id=None,
            actor=Actor(id="s-1", kind="staff"),
            data=new.data,
        )
        for i, new in enumerate(registry.encode(e) for e in history)
    ]
    assert {r.type for r in recorded} <= COMPANY_EVENTS
    again = Company.rebuilt(registry.decode(r) for r in recorded)
    assert vars(again) == vars(c)
    assert again.version == len(history)
