"""The support center's application rules, at the service layer: ``Tickets`` and
``SupportCatalog`` over the in-memory store and a SQLite read model, the
departments service's own application writing the department facts, the
clients' facts as their topic carries them. No HTTP, no broker: the HTTP
contract of these rules (status codes, bodies) stays in
``tests/integration/test_tickets.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from services.departments.app.handlers import Departments
from services.departments.domain.events import LocalizedText, Support
from services.departments.projections import projections as department_projections
from services.tickets.app.catalog import SupportCatalog
from services.tickets.app.handlers import NotAllowed, OpenDraft, Tickets
from services.tickets.copies import support
from services.tickets.domain.catalog import (
    AnnouncementDraft,
    CategoryDraft,
    SettingsPatch,
    TemplateDraft,
    TemplatePatch,
)
from services.tickets.domain.ticket import TicketChanged, thread_id
from services.tickets.projections import projections as ticket_projections
from services.tickets.projections.queue import ticket_entries
from shared.access.control import Access, Principal
from shared.domain.aggregate import Conflict, DomainError, NotFound, PaymentRequired
from shared.domain.events import SYSTEM, NewEvent
from shared.eventstore import ConcurrencyError
from shared.privacy.shredding import KeyRing
from tests.service.harness import Facts, Harness, client, running, staff

ALL_RIGHTS = (
    "tickets.view", "tickets.reply", "tickets.internal_note", "tickets.assign",
    "tickets.transfer", "tickets.close", "tickets.reopen",
)  # fmt: skip


@dataclass
class Desk:
    """The tickets service and what it knows of other contexts."""

    harness: Harness
    tickets: Tickets
    catalog: SupportCatalog
    departments: Departments
    department_facts: Facts
    client_facts: Facts
    access: dict[str, Access]

    async def department(
        self, name: str, providers: list[str] | None = None, *, charge: bool = False
    ) -> str:
        created = await self.departments.create_department(
            SYSTEM,
            LocalizedText(en=name, ru=name),
            support=Support(enabled=True, providers=providers or [], charge_requests=charge),
        )
        await self.department_facts.deliver()
        return created.id

    async def client(self, client_id: str, project_id: str | None = None) -> Principal:
        await self.client_facts.publish(
            f"client-{client_id}",
            NewEvent("ClientRegistered", {"client_id": client_id, "project_id": project_id}),
        )
        return client(client_id)

    def staff(self, staff_id: str, rights: tuple[str, ...], departments: list[str]) -> Principal:
        principal = staff(staff_id, rights, departments)
        self.access[staff_id] = principal.access  # what the access copy would hold
        return principal

    async def open(self, who: Principal, department_id: str, **draft: str) -> str:
        opened = await self.tickets.open_ticket(
            who,
            OpenDraft(department_id=department_id, subject="Server down", body="Help", **draft),
        )
        return opened.id

    async def entries(self, ticket_id: str, *, client_view: bool) -> list[str]:
        """The entry types of the ticket page: a client's view shows only what it may see."""
        await self.harness.settled()
        query = select(ticket_entries.c.type).where(ticket_entries.c.ticket_id == ticket_id)
        if client_view:
            query = query.where(ticket_entries.c.visible_to_client.is_(True))
        async with self.harness.db.engine.connect() as conn:
            return [r.type for r in await conn.execute(query.order_by(ticket_entries.c.version))]


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    async with (
        running(tmp_path / "tickets", ticket_projections()) as harness,
        running(tmp_path / "departments", department_projections()) as departments_side,
    ):
        db = harness.db
        catalog = SupportCatalog(harness.store, db)
        await catalog.start()
        access: dict[str, Access] = {}
        tickets = Tickets(
            store=harness.store,
            db=db,
            catalog=catalog,
            keys=KeyRing(db),
            staff=access.get,
        )
        await tickets.start()
        yield Desk(
            harness,
            tickets,
            catalog,
            Departments(departments_side.store, departments_side.db),
            Facts(db, tickets.on_departments_event, departments_side.store),
            Facts(db, tickets.on_clients_event),
            access,
        )


# ---------------------------------------------------------------- opening


async def test_a_client_opens_only_in_a_support_department_serving_their_project(
    desk: Desk,
) -> None:
    served = await desk.department("Served", ["main"])
    elsewhere = await desk.department("Elsewhere", ["other"])
    everyone = await desk.department("Everyone")
    alice = await desk.client("alice", "main")
    for department_id in (elsewhere, "no-such-department"):
        with pytest.raises(DomainError) as refused:
            await desk.open(alice, department_id)
        assert refused.value.field == "department_id"
    ticket_id = await desk.open(alice, served)
    ticket = await desk.tickets.load(ticket_id)
    assert (ticket.client_id, ticket.department_id, ticket.project_id) == ("alice", served, "main")
    # A client without a project: only departments that serve everyone.
    nobody = await desk.client("nobody")
    with pytest.raises(DomainError):
        await desk.open(nobody, served)
    assert (await desk.tickets.load(await desk.open(nobody, everyone))).exists


async def test_staff_open_for_a_named_client_with_the_reply_right(desk: Desk) -> None:
    served = await desk.department("Served", ["main"])
    await desk.client("alice", "main")
    helper = desk.staff("helper", ("tickets.reply", "tickets.view"), [served])
    with pytest.raises(DomainError) as unnamed:
        await desk.open(helper, served)
    assert unnamed.value.field == "client_id"
    with pytest.raises(DomainError):
        await desk.open(helper, served, client_id="unknown-client")
    mute = desk.staff("mute", ("tickets.view",), [served])
    with pytest.raises(NotAllowed):
        await desk.open(mute, served, client_id="alice")
    ticket = await desk.tickets.load(await desk.open(helper, served, client_id="alice"))
    assert ticket.client_id == "alice"
    assert [e.type for e in await desk.harness.store.read_all()][-1] == "TicketOpened"


async def test_a_blocking_announcement_refuses_clients_but_not_staff(desk: Desk) -> None:
    served = await desk.department("Served", ["main"])
    alice = await desk.client("alice", "main")
    helper = desk.staff("helper", ("tickets.reply", "tickets.view"), [served])
    admin = staff("admin", full_access=True).actor
    published = await desk.catalog.publish_announcement(
        admin,
        AnnouncementDraft.model_validate(
            {"text": "Migration", "ends_at": datetime.now(UTC) + timedelta(minutes=10),
             "blocking": True}
        ),
    )  # fmt: skip
    # No wait for the read model: the block holds from the command's answer on.
    with pytest.raises(Conflict) as blocked:
        await desk.open(alice, served)
    assert blocked.value.code == "blocked_by_announcement"
    await desk.open(helper, served, client_id="alice")
    await desk.catalog.end_announcement(admin, published.id)
    await desk.open(alice, served)


async def test_a_paid_department_takes_one_request_and_two_at_once_take_the_last_once(
    desk: Desk,
) -> None:
    paid = await desk.department("Paid", ["main"], charge=True)
    alice = await desk.client("alice", "main")
    with pytest.raises(PaymentRequired) as none_left:
        await desk.open(alice, paid)
    assert none_left.value.code == "no_paid_requests"
    await desk.catalog.credit_paid_requests(SYSTEM, "alice", 1)
    outcomes = await asyncio.gather(
        *(desk.open(alice, paid) for _ in range(2)), return_exceptions=True
    )
    opened = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, PaymentRequired)]
    assert len(opened) == 1 and len(refused) == 1, outcomes
    assert (await desk.tickets.load(opened[0])).paid
    assert await desk.catalog.paid_balance("alice") == 0
    opened_events = [e for e in await desk.harness.store.read_all() if e.type == "TicketOpened"]
    assert len(opened_events) == 1


async def test_a_paid_category_takes_a_request_in_a_free_department_and_stays_in_its_own(
    desk: Desk,
) -> None:
    free = await desk.department("Free", ["main"])
    other = await desk.department("Other", ["main"])
    alice = await desk.client("alice", "main")
    urgent = await desk.catalog.create_category(
        SYSTEM, CategoryDraft(topic="Urgent", department_id=free, paid=True)
    )
    with pytest.raises(PaymentRequired):
        await desk.open(alice, free, category_id=urgent.id)
    with pytest.raises(DomainError) as elsewhere:
        await desk.open(alice, other, category_id=urgent.id)
    assert elsewhere.value.field == "category_id"
    await desk.catalog.credit_paid_requests(SYSTEM, "alice", 2)
    ticket = await desk.tickets.load(await desk.open(alice, free, category_id=urgent.id))
    assert ticket.paid and await desk.catalog.paid_balance("alice") == 1
    assert not (await desk.tickets.load(await desk.open(alice, free))).paid


# ---------------------------------------------------------------- who sees what


async def test_visibility_of_tickets_for_clients_managers_and_staff(desk: Desk) -> None:
    first = await desk.department("First line", ["main"])
    second = await desk.department("Second line", ["main"])
    alice, bob = await desk.client("alice", "main"), await desk.client("bob", "main")
    await desk.client("manager", "main")
    for member in ("alice", "manager"):
        await desk.client_facts.publish(
            "company-co", NewEvent("CompanyMemberAdded", {"company_id": "co", "client_id": member})
        )
    await desk.client_facts.publish(
        "company-co",
        NewEvent("CompanyManagerAssigned", {"company_id": "co", "client_id": "manager"}),
    )
    manager = client("manager", company_id="co", company_manager=True)
    rights = ("tickets.view", "tickets.reply", "tickets.transfer")
    first_staff = desk.staff("first", rights, [first])
    second_staff = desk.staff("second", rights, [second])
    everywhere = desk.staff("everywhere", ("tickets.view", "tickets.all_departments"), [])
    tickets = {
        "alice": await desk.open(alice, first),
        "bob": await desk.open(bob, first),
        "manager": await desk.open(manager, second),
    }
    matrix = {
        "alice": (alice, {"alice"}),
        "bob": (bob, {"bob"}),
        "manager": (manager, {"alice", "manager"}),
        "first": (first_staff, {"alice", "bob"}),
        "second": (second_staff, {"manager"}),
        "everywhere": (everywhere, {"alice", "bob", "manager"}),
    }
    for who, (principal, visible) in matrix.items():
        for owner, ticket_id in tickets.items():
            ticket = await desk.tickets.load(ticket_id)
            assert await desk.tickets.may_see(principal, ticket) == (owner in visible), (who, owner)
    # Commands on a ticket the caller may not see: as if it did not exist.
    with pytest.raises(NotFound):
        await desk.tickets.post_message(alice, tickets["bob"], "me too", False, None)
    # The manager reads the company's tickets but does not reply in them.
    with pytest.raises(NotAllowed):
        await desk.tickets.post_message(manager, tickets["alice"], "me too", False, None)
    # After a transfer the first line no longer sees it, the second line does.
    await desk.tickets.transfer(first_staff, tickets["alice"], second, None, None)
    with pytest.raises(NotFound):
        await desk.tickets.post_message(first_staff, tickets["alice"], "hello?", False, None)
    await desk.tickets.post_message(second_staff, tickets["alice"], "here", False, None)


async def test_a_staff_member_needs_the_right_for_each_command(desk: Desk) -> None:
    served = await desk.department("Served", ["main"])
    alice = await desk.client("alice", "main")
    ticket_id = await desk.open(alice, served)
    reader = desk.staff("reader", ("tickets.view",), [served])
    commands = {
        "reply": desk.tickets.post_message(reader, ticket_id, "x", False, None),
        "note": desk.tickets.post_message(reader, ticket_id, "x", True, None),
        "assign": desk.tickets.assign(reader, ticket_id, None, None),
        "transfer": desk.tickets.transfer(reader, ticket_id, served, None, None),
        "close": desk.tickets.close(reader, ticket_id, None),
        "reopen": desk.tickets.reopen(reader, ticket_id, None),
    }
    for name, command in commands.items():
        with pytest.raises(NotAllowed):
            await command
        assert (await desk.tickets.load(ticket_id)).version == 1, name
    with pytest.raises(NotAllowed):
        await desk.tickets.post_message(alice, ticket_id, "x", True, None)  # clients: no notes


# ---------------------------------------------------------------- the conversation


async def test_a_reply_over_a_change_not_seen_is_refused_with_the_changes(desk: Desk) -> None:
    served = await desk.department("Desk", ["main"])
    customer = await desk.client("customer", "main")
    anna = desk.staff("anna", ALL_RIGHTS, [served])
    boris = desk.staff("boris", ALL_RIGHTS, [served])
    ticket_id = await desk.open(customer, served)
    # Both read version 1; Anna answers first and leaves a note.
    await desk.tickets.post_message(anna, ticket_id, "Rebooting it", False, 1)
    await desk.tickets.post_message(anna, ticket_id, "grumpy customer", True, None)
    with pytest.raises(TicketChanged) as clash:
        await desk.tickets.post_message(boris, ticket_id, "Have you tried...", False, 1)
    assert clash.value.current == 3
    assert [c.type for c in clash.value.changes] == ["TicketMessagePosted"] * 2
    assert (await desk.tickets.load(ticket_id)).version == 3  # Boris wrote nothing
    # The client's check lists only what the client may see: not the note.
    with pytest.raises(TicketChanged) as client_clash:
        await desk.tickets.post_message(customer, ticket_id, "ok", False, 1)
    assert len(client_clash.value.changes) == 1
    assert "grumpy" not in str([c.to_dict() for c in client_clash.value.changes])
    # A version from the future is bad input, not a conflict.
    with pytest.raises(DomainError) as future:
        await desk.tickets.post_message(boris, ticket_id, "x", False, 99)
    assert future.value.field == "expected_version"


async def test_replies_without_a_version_seen_all_land_when_written_at_once(desk: Desk) -> None:
    served = await desk.department("Desk", ["main"])
    customer = await desk.client("customer", "main")
    agents = [desk.staff(f"agent{n}", ALL_RIGHTS, [served]) for n in range(4)]
    ticket_id = await desk.open(customer, served)
    answers = await asyncio.gather(
        *(desk.tickets.post_message(a, ticket_id, f"from {a.id}", False, None) for a in agents)
    )
    assert sorted(a.version for a in answers) == [2, 3, 4, 5]
    assert await desk.entries(ticket_id, client_view=True) == ["opened"] + ["message"] * 4


async def test_the_client_never_sees_internal_notes_or_assignments(desk: Desk) -> None:
    served = await desk.department("Desk", ["main"])
    customer = await desk.client("customer", "main")
    anna = desk.staff("anna", ALL_RIGHTS, [served])
    ticket_id = await desk.open(customer, served)
    await desk.tickets.post_message(anna, ticket_id, "Rebooting it", False, None)
    await desk.tickets.post_message(anna, ticket_id, "grumpy customer", True, None)
    await desk.tickets.assign(anna, ticket_id, "anna", None)
    assert await desk.entries(ticket_id, client_view=True) == ["opened", "message"]
    assert await desk.entries(ticket_id, client_view=False) == [
        "opened", "message", "internal_note", "assigned",
    ]  # fmt: skip


async def test_closed_tickets_take_a_client_reply_but_staff_must_reopen(desk: Desk) -> None:
    served = await desk.department("Desk", ["main"])
    customer = await desk.client("customer", "main")
    anna = desk.staff("anna", ALL_RIGHTS, [served])
    ticket_id = await desk.open(customer, served)
    closed = await desk.tickets.close(customer, ticket_id, None)
    again = await desk.tickets.close(customer, ticket_id, None)
    assert (again.version, again.position) == (closed.version, 0)  # nothing written twice
    with pytest.raises(Conflict) as late:
        await desk.tickets.post_message(anna, ticket_id, "late", False, None)
    assert late.value.code == "ticket_closed"
    await desk.tickets.post_message(customer, ticket_id, "It broke again", False, None)
    assert (await desk.tickets.load(ticket_id)).status == "open"
    with pytest.raises(NotAllowed):
        await desk.tickets.rate(anna, ticket_id, 1, None, "")  # only the client rates


# ---------------------------------------------------------------- transfers


async def test_transfers_show_the_client_at_most_the_configured_number_of_notices(
    desk: Desk,
) -> None:
    lines = [await desk.department(f"Line {n}", ["main"]) for n in range(3)]
    customer = await desk.client("customer", "main")
    router = desk.staff("router", ("tickets.view", "tickets.transfer"), lines)
    taker = desk.staff("taker", ("tickets.view",), [lines[1]])
    outsider = desk.staff("outsider", ("tickets.view",), [lines[0]])
    ticket_id = await desk.open(customer, lines[0])
    version = 1
    for target in (lines[1], lines[2], lines[0], lines[1], lines[2]):
        version = (await desk.tickets.transfer(router, ticket_id, target, None, version)).version
    await desk.tickets.transfer(router, ticket_id, lines[1], taker.id, None)
    assert (await desk.entries(ticket_id, client_view=True)).count("transfer") == 3
    assert (await desk.entries(ticket_id, client_view=False)).count("transfer") == 6
    ticket = await desk.tickets.load(ticket_id)
    assert (ticket.department_id, ticket.assignee_id) == (lines[1], "taker")

    refusals: list[tuple[str | None, str | None, str]] = [
        ("nowhere", None, "department_id"),
        (None, "nobody", "staff_id"),
        (None, outsider.id, "staff_id"),  # not in the ticket's department
        (lines[0], taker.id, "staff_id"),  # not in the target department
    ]
    for department_id, staff_id, field in refusals:
        with pytest.raises(DomainError) as refused:
            await desk.tickets.transfer(router, ticket_id, department_id, staff_id, None)
        assert refused.value.field == field, (department_id, staff_id)
    assert (await desk.tickets.load(ticket_id)).version == ticket.version


async def test_the_number_of_transfer_notices_shown_is_a_support_setting(desk: Desk) -> None:
    lines = [await desk.department(f"Line {n}", ["main"]) for n in range(2)]
    customer = await desk.client("customer", "main")
    router = desk.staff("router", ("tickets.view", "tickets.transfer"), lines)
    await desk.catalog.change_settings(SYSTEM, SettingsPatch(transfer_notices_shown=1))
    ticket_id = await desk.open(customer, lines[0])
    for target in (lines[1], lines[0], lines[1]):
        await desk.tickets.transfer(router, ticket_id, target, None, None)
    assert (await desk.entries(ticket_id, client_view=True)).count("transfer") == 1
    assert (await desk.entries(ticket_id, client_view=False)).count("transfer") == 3


async def test_catalogue_changes_without_a_version_seen_all_land_when_written_at_once(
    desk: Desk,
) -> None:
    # The kernel's one retry policy for templates (and categories, announcements) too; a
    # caller naming the version it saw gets the conflict instead.
    created = await desk.catalog.create_template(SYSTEM, TemplateDraft(name="Hello", body="Hi"))
    patches = [
        TemplatePatch(name="Greeting"),
        TemplatePatch(subject="Re"),
        TemplatePatch(body="Hello"),
    ]
    answers = await asyncio.gather(
        *(desk.catalog.change_template(SYSTEM, created.id, p) for p in patches)
    )
    assert sorted(a.version for a in answers) == [2, 3, 4]
    with pytest.raises(ConcurrencyError):
        await desk.catalog.change_template(SYSTEM, created.id, TemplatePatch(name="Late"), 3)
    with pytest.raises(NotFound):
        await desk.catalog.delete_template(SYSTEM, "no-such-template")


# ---------------------------------------------------------------- other contexts' facts


def _messaged(message_id: str) -> NewEvent:
    return NewEvent(
        "ClientMessaged",
        {
            "client_id": "customer",
            "message_id": message_id,
            "forbid_replies": True,
            "assign_replies_to": "sender",
        },
    )


async def test_a_message_to_a_client_opens_one_thread_and_its_notice_expiry_reopens_it(
    desk: Desk,
) -> None:
    served = await desk.department("Abuse desk", ["main"])
    customer = await desk.client("customer", "main")
    sender = desk.staff("sender", ("clients.message", "tickets.view", "tickets.reply"), [])
    desk_staff = desk.staff("desk", ("tickets.view",), [served])
    message_id = str(uuid.uuid4())
    await desk.client_facts.publish(f"client-{message_id}", _messaged(message_id))
    await desk.client_facts.redeliver()  # delivered twice: still one thread
    ticket_id = thread_id("customer", message_id)
    thread = await desk.tickets.load(ticket_id)
    assert thread.replies_forbidden and thread.department_id is None
    assert thread.assignee_id == "sender" and thread.status == "answered"
    assert [e.type for e in await desk.harness.store.read_all()].count("TicketOpened") == 1
    with pytest.raises(Conflict) as refused:
        await desk.tickets.post_message(customer, ticket_id, "not me", False, None)
    assert refused.value.code == "replies_forbidden"
    # The messages queue: the sender sees it, a department's staff do not.
    assert await desk.tickets.may_see(sender, thread)
    assert not await desk.tickets.may_see(desk_staff, thread)

    expired = NewEvent(
        "AbuseNoticeExpired",
        {"client_id": "customer", "message_id": message_id, "action": "move_to_active"},
    )
    await desk.client_facts.publish("client-customer", expired)
    await desk.client_facts.redeliver()
    stream = await desk.harness.store.read_stream(f"ticket-{ticket_id}")
    assert [e.type for e in stream] == ["TicketOpened", "TicketReopened"]
    assert (await desk.tickets.load(ticket_id)).status == "open"


async def test_an_erased_clients_texts_are_gone_and_their_tickets_take_no_reply(
    desk: Desk,
) -> None:
    served = await desk.department("Desk", ["main"])
    customer = await desk.client("customer", "main")
    agent = desk.staff("agent", ("tickets.view", "tickets.reply"), [served])
    ticket_id = await desk.open(customer, served)
    await desk.tickets.post_message(agent, ticket_id, "Secret reply", False, None)
    stored = str([e.data for e in await desk.harness.store.read_stream(f"ticket-{ticket_id}")])
    assert "Secret" not in stored and "Server down" not in stored  # sealed in the log
    assert (await desk.tickets.load(ticket_id)).subject == "Server down"
    await desk.client_facts.publish(
        "client-customer", NewEvent("ClientErased", {"client_id": "customer"})
    )
    ticket = await desk.tickets.load(ticket_id)
    assert ticket.exists and ticket.subject is None
    with pytest.raises(Conflict) as refused:
        await desk.tickets.post_message(agent, ticket_id, "anyone there?", False, None)
    assert refused.value.code == "client_erased"
    async with desk.harness.db.engine.connect() as conn:
        known = await support.client(conn, "customer")
    assert known is not None and known.erased


async def test_a_silent_ticket_closes_on_the_notifiers_deadline_only_once_it_is_due(
    desk: Desk,
) -> None:
    served = await desk.department("Desk", ["main"])
    customer = await desk.client("customer", "main")
    agent = desk.staff("agent", ("tickets.view", "tickets.reply"), [served])
    ticket_id = await desk.open(customer, served)
    await desk.tickets.post_message(agent, ticket_id, "Fixed?", False, None)
    deadlines = Facts(desk.harness.db, desk.tickets.on_notifier_event)
    close = NewEvent("DeadlineExpired", {"kind": "ticket_auto_close", "ticket_id": ticket_id})
    await deadlines.publish(f"deadline-{ticket_id}", close)
    assert (await desk.tickets.load(ticket_id)).status == "answered"  # a week too early
    real_clock = desk.tickets.clock
    desk.tickets.clock = lambda: real_clock() + timedelta(days=7, minutes=1)
    await deadlines.redeliver()
    await deadlines.redeliver()
    kinds = [e.type for e in await desk.harness.store.read_stream(f"ticket-{ticket_id}")]
    assert kinds.count("TicketClosed") == 1
    assert (await desk.tickets.load(ticket_id)).status == "closed"
