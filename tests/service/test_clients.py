"""The clients context's application rules at the service layer: ``Clients`` and
``Companies`` over the in-memory store, their read models in SQLite, identity
replaced by a recording stand-in of ``IdentityPort`` (its HTTP side is tested in
the integration suite). The HTTP contract stays in
``tests/integration/test_clients.py`` and ``test_companies.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.clients.app.application import assemble
from services.clients.app.attachments import AttachmentStore
from services.clients.app.companies import Companies
from services.clients.app.handlers import Clients, MessageDraft
from services.clients.app.ports import UNCHANGED, Impersonation, Unchanged
from services.clients.copies import record_staff_name, staff_metadata
from services.clients.domain.client import ClientCard, ClientPatch
from services.clients.domain.company import ContactDraft
from services.clients.domain.company_events import ContactAdded
from services.clients.domain.events import ClientMessaged, Violation
from services.clients.projections.queries import ClientFilter
from services.clients.service import projections
from shared.domain.aggregate import Conflict, DomainError, NotFound
from shared.domain.events import Actor, NewEvent
from shared.eventstore import ConcurrencyError
from tests.service.harness import Facts, Harness, running

ADMIN = Actor(id="admin", kind="staff")
PASSWORD = "Passw0rd-for-tests"


@dataclass
class RecordingIdentity:
    """Identity as the clients context sees it: credentials by client, company facts."""

    logins: dict[str, str] = field(default_factory=dict)  # client id → login
    companies: dict[str, tuple[str | None, bool]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    async def register(self, client_id: str, login: str, password: str) -> None:
        if login in self.logins.values():
            raise Conflict("duplicate_login", f"login {login!r} is taken")
        self.logins[client_id] = login

    async def update(
        self,
        client_id: str,
        *,
        disabled: bool | None = None,
        company_id: str | Unchanged | None = UNCHANGED,
        company_manager: bool | None = None,
    ) -> None:
        assert not isinstance(company_id, Unchanged) and company_manager is not None
        self.companies[client_id] = (company_id, company_manager)

    async def change_password(self, client_id: str, password: str) -> None:
        return None

    async def remove(self, client_id: str) -> None:
        if self.logins.pop(client_id, None) is None:
            raise NotFound(f"principal {client_id}")
        self.removed.append(client_id)

    async def impersonate(
        self, client_id: str, staff_id: str, staff_session_id: str
    ) -> Impersonation:
        return Impersonation("token", f"session-{uuid.uuid4()}", client_id, staff_id)


@dataclass
class Context:
    harness: Harness
    clients: Clients
    companies: Companies
    identity: RecordingIdentity

    async def register(self, login: str, **card: object) -> str:
        drafted = ClientCard.model_validate(
            {
                "login": login,
                "email": f"{login}@example.com",
                "country": "DE",
                "customer_status": "individual",
                "contact_person": f"Person {login}",
                **card,
            }
        )
        answer = await self.clients.register_client(ADMIN, drafted, PASSWORD, "203.0.113.9")
        await self.harness.settled()  # the directory lists the new client
        return answer.id


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[Context]:
    async with running(tmp_path, projections()) as harness:
        identity = RecordingIdentity()
        application = await assemble(
            harness.store, harness.db, identity, AttachmentStore(harness.db)
        )
        await harness.db.create_tables(staff_metadata)
        staff_facts = Facts(harness.db, record_staff_name)  # identity.events, as consumed
        await staff_facts.publish(
            "staff-admin",
            NewEvent("StaffAdded", {"staff_id": ADMIN.id, "full_name": {"en": "Ann Admin"}}),
        )
        yield Context(harness, application.clients, application.companies, identity)


# ---------------------------------------------------------------- registration and erasure


async def test_registration_hands_the_credential_to_identity_and_writes_no_secret(
    context: Context,
) -> None:
    client_id = await context.register("alice")
    assert context.identity.logins == {client_id: "alice"}
    stored = str([e.data for e in await context.harness.store.read_all()])
    assert PASSWORD not in stored and "Person alice" not in stored  # sealed personal data
    # A login identity refuses: nothing written here.
    head = await context.harness.store.head_position()
    with pytest.raises(Conflict) as taken:
        await context.register("alice")
    assert taken.value.code == "duplicate_login"
    assert await context.harness.store.head_position() == head
    # A password that breaks the rule never reaches identity.
    card = ClientCard.model_validate(
        {"login": "bob", "email": "bob@example.com", "country": "DE",
         "customer_status": "individual"}
    )  # fmt: skip
    with pytest.raises(DomainError) as weak:
        await context.clients.register_client(ADMIN, card, "only-letters", None)
    assert weak.value.field == "password" and "bob" not in context.identity.logins.values()


async def test_erasure_unseals_nothing_frees_the_login_and_leaves_the_company(
    context: Context,
) -> None:
    client_id = await context.register("carol")
    company = await context.companies.create_company(ADMIN, "Carol's shop")
    await context.companies.add_member(ADMIN, company.id, client_id, manager=True)
    assert context.identity.companies[client_id] == (company.id, True)
    await context.clients.erase_client(ADMIN, client_id)
    assert context.identity.removed == [client_id]
    with pytest.raises(NotFound):
        await context.clients.client(client_id)
    registered = (await context.harness.store.read_stream(f"client-{client_id}"))[0]
    opened = await context.clients.sealer.open(registered)
    assert opened.contact_person is None  # type: ignore[attr-defined]
    members = await context.companies._company(company.id, None)
    assert client_id not in members.members
    # Repeating it finishes nothing twice and writes nothing.
    head = await context.harness.store.head_position()
    again = await context.clients.erase_client(ADMIN, client_id)
    assert again.position == 0 and await context.harness.store.head_position() == head


# ---------------------------------------------------------------- messages and abuse notices


async def test_a_message_by_filter_reaches_each_client_in_their_language(
    context: Context,
) -> None:
    group = await context.clients.create_group(ADMIN, "Bulk")
    await context.harness.settled()
    english = [await context.register(f"en{n}", groups=[group.id]) for n in range(3)]
    russian = await context.register("ru0", groups=[group.id], language="ru")
    outsider = await context.register("outsider")
    report = await context.clients.send_message(
        ADMIN,
        MessageDraft(
            client_ids=None,
            filter=ClientFilter(group_id=group.id),
            subject={"en": "Hello %client_person%", "ru": "Привет %client_person%"},
            text={"en": "Dear %client_person%, %admin_name%", "ru": "Текст"},
            forbid_replies=True,
            assign_replies_to_me=True,
        ),
    )
    assert (report.recipients, report.skipped_for_language) == (4, 0)
    messaged = {
        e.stream.removeprefix("client-"): await context.clients.sealer.open(e)
        for e in await context.harness.store.read_all()
        if e.type == "ClientMessaged"
    }
    assert set(messaged) == {*english, russian} and outsider not in messaged
    for message in messaged.values():
        assert isinstance(message, ClientMessaged)
        assert message.message_id == report.message_id and message.forbid_replies
        assert message.assign_replies_to == ADMIN.id
    assert messaged[russian].subject == "Привет Person ru0"  # type: ignore[attr-defined]
    assert messaged[english[0]].subject == "Hello Person en0"  # type: ignore[attr-defined]
    assert messaged[english[1]].text == "Dear Person en1, Ann Admin"  # type: ignore[attr-defined]
    # Strictly in one language: the others are skipped, and counted.
    strict = await context.clients.send_message(
        ADMIN,
        MessageDraft(
            client_ids=None, filter=ClientFilter(group_id=group.id),
            subject={"ru": "Только"}, text={"ru": "Текст"}, strict_language=True,
        ),
    )  # fmt: skip
    assert (strict.recipients, strict.skipped_for_language) == (1, 3)
    with pytest.raises(DomainError) as unknown:
        await context.clients.send_message(
            ADMIN, MessageDraft(client_ids=["nobody"], filter=None, subject="s", text="t")
        )
    assert unknown.value.field == "client_ids"


async def test_an_abuse_notice_adds_points_and_its_expiry_acts_once(context: Context) -> None:
    client_id = await context.register("abuser")
    report = await context.clients.send_message(
        ADMIN,
        MessageDraft(
            client_ids=[client_id],
            filter=None,
            subject="Abuse report",
            text="Your server sends spam.",
            violation=Violation(
                deadline=datetime.now(UTC) + timedelta(days=2),
                on_no_reaction="suspend_services",
                penalty_points=5,
            ),
        ),
    )
    client = await context.clients.client(client_id)
    assert client.penalty_points == 5 and not client.services_suspended
    with pytest.raises(DomainError) as past:
        await context.clients.send_message(
            ADMIN,
            MessageDraft(
                client_ids=[client_id], filter=None, subject="s", text="t",
                violation=Violation(deadline=datetime(2020, 1, 1, tzinfo=UTC),
                                    on_no_reaction="move_to_active"),
            ),
        )  # fmt: skip
    assert past.value.field == "violation.deadline"
    # The notifier says the deadline passed, twice (redelivery): one action.
    deadlines = Facts(context.harness.db, context.clients.on_notifier_event)
    expired = {"kind": "abuse_notice", "client_id": client_id, "message_id": report.message_id}
    await deadlines.publish(f"deadline-{report.message_id}", NewEvent("DeadlineExpired", expired))
    await deadlines.redeliver()
    assert (await context.clients.client(client_id)).services_suspended
    kinds = [e.type for e in await context.harness.store.read_stream(f"client-{client_id}")]
    assert kinds.count("AbuseNoticeExpired") == 1 and kinds.count("ClientServicesSuspended") == 1


# ---------------------------------------------------------------- companies


async def test_a_client_belongs_to_one_company_and_identity_knows_which(
    context: Context,
) -> None:
    alice, bob = await context.register("alice"), await context.register("bob")
    shop = await context.companies.create_company(ADMIN, "Shop")
    other = await context.companies.create_company(ADMIN, "Other")
    joined = await context.companies.add_member(ADMIN, shop.id, alice)
    again = await context.companies.add_member(ADMIN, shop.id, alice)
    assert (again.version, again.position) == (joined.version, 0)  # joins once
    assert context.identity.companies[alice] == (shop.id, False)
    # Asked at once after joining: the other company refuses her.
    with pytest.raises(Conflict) as taken:
        await context.companies.add_member(ADMIN, other.id, alice)
    assert taken.value.code == "client_in_other_company"
    with pytest.raises(DomainError) as unknown:
        await context.companies.add_member(ADMIN, shop.id, "no-such-client")
    assert unknown.value.field == "client_id"
    # The manager must be a member; making Bob manager tells identity about both.
    with pytest.raises(DomainError):
        await context.companies.assign_manager(ADMIN, shop.id, bob)
    await context.companies.add_member(ADMIN, shop.id, bob)
    await context.companies.assign_manager(ADMIN, shop.id, alice)
    await context.companies.assign_manager(ADMIN, shop.id, bob)
    assert context.identity.companies[alice] == (shop.id, False)
    assert context.identity.companies[bob] == (shop.id, True)
    # Leaving, and the company's deletion, tell identity "no company".
    await context.companies.remove_member(ADMIN, shop.id, alice)
    assert context.identity.companies[alice] == (None, False)
    await context.companies.add_member(ADMIN, other.id, alice)  # free to join another now
    await context.companies.delete_company(ADMIN, shop.id)
    assert context.identity.companies[bob] == (None, False)
    with pytest.raises(NotFound):
        await context.companies.add_member(ADMIN, shop.id, bob)


async def test_a_removed_contacts_personal_data_is_gone_for_good(context: Context) -> None:
    shop = await context.companies.create_company(ADMIN, "Shop")
    added = await context.companies.add_contact(
        ADMIN, shop.id, ContactDraft(name="Dora Contact", email="dora@example.com")
    )
    company = await context.companies._company(shop.id, None)
    assert company.contacts[added.id].name == "Dora Contact"
    await context.companies.remove_contact(ADMIN, shop.id, added.id)
    assert await context.clients.keys.key(added.id) is None
    [contact_added] = [
        e
        for e in await context.harness.store.read_stream(f"company-{shop.id}")
        if e.type == ContactAdded.event_type
    ]
    opened = await context.clients.sealer.open(contact_added)
    assert opened.name is None and opened.email is None  # type: ignore[attr-defined]
    assert "Dora" not in str(contact_added.data)


async def test_changes_without_a_version_seen_all_land_when_written_at_once(
    context: Context,
) -> None:
    # The kernel's one retry policy: a concurrent change is decided again on fresh state;
    # a caller naming the version it saw gets the conflict instead.
    client_id = await context.register("carol")
    patches = [
        ClientPatch(language="ru"),
        ClientPatch(phone="+49 30 1234567"),
        ClientPatch(note="prefers mail"),
    ]
    answers = await asyncio.gather(
        *(context.clients.change_client(ADMIN, client_id, p, None) for p in patches),
        context.clients.suspend_services(ADMIN, client_id),
    )
    assert sorted(a.version for a in answers) == [2, 3, 4, 5]
    client = await context.clients.client(client_id)
    assert (client.language, client.services_suspended) == ("ru", True)
    stream = await context.harness.store.read_stream(f"client-{client_id}")
    changed = sorted(e.data["changed"] for e in stream if e.type == "ClientChanged")
    assert changed == [["language"], ["note"], ["phone"]]
    with pytest.raises(ConcurrencyError):
        await context.clients.change_client(ADMIN, client_id, ClientPatch(language="en"), 4)
    company = (await context.companies.create_company(ADMIN, "Acme")).id
    added = await asyncio.gather(
        *(
            context.companies.add_contact(ADMIN, company, ContactDraft(email=f"c{n}@example.com"))
            for n in range(3)
        )
    )
    assert sorted(a.version for a in added) == [2, 3, 4]
