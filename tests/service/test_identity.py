"""Identity's application rules at the service layer: ``Identity`` over the in-memory
store, its read models in SQLite, the departments' facts written by the departments
service's own application and handed to identity's consumer. Password hashing is
argon2 at its cheapest (what is tested is who gets which rights, not the hash).
The HTTP contract stays in ``tests/integration/test_identity.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from services.departments.app.handlers import Departments
from services.departments.domain.events import LocalizedText
from services.departments.projections import projections as department_projections
from services.identity.app.credentials import CredentialStore
from services.identity.app.handlers import ADMIN_ID, Identity, LoginRefused
from services.identity.copies.departments import departments_metadata
from services.identity.domain.events import LocalizedName
from services.identity.projections import projections
from shared.access.control import AccessCopy
from shared.access.delegation import Grantor
from shared.domain.aggregate import Conflict, DomainError
from shared.domain.events import Actor
from shared.runtime.settings import ServiceSettings
from tests.service.harness import Facts, Harness, running

ADMIN = Actor(id=ADMIN_ID, kind="staff")
FULL = Grantor(id=ADMIN.id, full_access=True)  # the full-access admin hands rights on
ADMIN_PASSWORD = "admin-password-for-tests"


@dataclass
class Context:
    harness: Harness
    identity: Identity
    departments: Departments
    department_facts: Facts

    async def department(self, name: str, rights: list[str]) -> str:
        created = await self.departments.create_department(ADMIN, LocalizedText(en=name, ru=name))
        for right in rights:
            await self.departments.set_right(ADMIN, created.id, right, True, by=FULL)
        await self.department_facts.deliver()
        return created.id

    async def add(self, login: str, departments: list[str], **extra: object) -> str:
        answer = await self.identity.add_staff(
            ADMIN,
            f"{login}-password",
            FULL,
            login=login,
            full_name=LocalizedName(en=login.title(), ru=login),
            email=f"{login}@example.com",
            phone=None,
            departments=departments,
            **extra,
        )
        await self.harness.settled()  # the staff directory lists the new member
        return answer.id

    def rights(self, staff_id: str) -> set[str]:
        """What every service's access copy says the member may do."""
        access = self.identity.access.by_principal[staff_id]
        return set(access.rights)


def _identity(harness: Harness, tmp_path: Path) -> Identity:
    return Identity(
        store=harness.store,
        db=harness.db,
        credentials=CredentialStore(
            harness.db, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        ),
        access=AccessCopy(),
        settings=ServiceSettings(var_dir=str(tmp_path / "var")),
    )


@pytest.fixture
async def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Context]:
    monkeypatch.setenv("ADMIN_PASSWORD", ADMIN_PASSWORD)
    async with (
        running(tmp_path / "identity", projections()) as harness,
        running(tmp_path / "departments", department_projections()) as departments_side,
    ):
        await harness.db.create_tables(departments_metadata)
        identity = _identity(harness, tmp_path)
        await identity.start()
        yield Context(
            harness,
            identity,
            Departments(departments_side.store, departments_side.db),
            Facts(harness.db, identity.on_department_event, departments_side.store),
        )


async def test_rights_come_from_departments_and_grants_and_follow_department_changes(
    context: Context,
) -> None:
    support = await context.department("Support", ["tickets.view", "tickets.reply"])
    sales = await context.department("Sales", [])
    alice = await context.add("alice", [support, sales])
    await context.identity.grant(ADMIN, alice, "clients.create", FULL)
    assert context.rights(alice) == {"tickets.view", "tickets.reply", "clients.create"}
    assert set(context.identity.access.by_principal[alice].departments) == {support, sales}
    # Only a department gives tickets.reply: it cannot be taken from her alone.
    with pytest.raises(Conflict) as inherited:
        await context.identity.revoke(ADMIN, alice, "tickets.reply", FULL)
    assert inherited.value.code == "inherited_right"
    await context.identity.revoke(ADMIN, alice, "clients.create", FULL)
    # A department's new right reaches its members; its deletion takes its rights away.
    await context.departments.set_right(ADMIN, sales, "clients.view", True, by=FULL)
    await context.department_facts.deliver()
    assert context.rights(alice) == {"tickets.view", "tickets.reply", "clients.view"}
    await context.departments.delete_department(ADMIN, support)
    await context.department_facts.deliver()
    assert context.rights(alice) == {"clients.view"}


async def test_a_member_of_an_unknown_department_is_refused(context: Context) -> None:
    with pytest.raises(DomainError) as refused:
        await context.add("ghost", ["no-such-department"])
    assert refused.value.field == "departments.0"
    with pytest.raises(LoginRefused):  # and no credential was left behind
        await context.identity.login("ghost", "ghost-password", None)


async def test_a_change_made_by_another_replica_still_counts(
    context: Context, tmp_path: Path
) -> None:
    bob = await context.add("bob", [])
    await context.identity.grant(
        ADMIN, bob, "clients.view", FULL
    )  # this replica has bob folded now
    other = _identity(context.harness, tmp_path)  # a second replica on the same store
    await other.grant(ADMIN, bob, "clients.create", FULL)
    await context.identity.revoke(ADMIN, bob, "clients.create", FULL)
    assert context.rights(bob) == {"clients.view"}


async def test_five_failed_logins_lock_the_login_even_for_the_right_password(
    context: Context,
) -> None:
    for _ in range(5):
        with pytest.raises(LoginRefused) as wrong:
            await context.identity.login("admin", "wrong!", "203.0.113.9")
        assert wrong.value.status == 401
    with pytest.raises(LoginRefused) as locked:
        await context.identity.login("admin", ADMIN_PASSWORD, "203.0.113.9")
    assert locked.value.status == 429
    assert locked.value.retry_after is not None and 0 < locked.value.retry_after <= 15 * 60 + 1
    assert ADMIN_PASSWORD not in str(locked.value)
