"""The support center's ticket core over real HTTP, with the real identity, departments
and clients services, PostgreSQL and the broker (the notifier is a stand-in publisher).

One stack serves the whole module (four services take a while to join their
consumer groups); every test makes its own departments, staff and clients, so
tests do not see each other's data where it matters. The default "Technical
support" department is narrowed to a project nobody has, so that each test
decides which departments its clients are offered.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.clients.service import SPEC as CLIENTS
from services.departments.domain.defaults import TECHNICAL_SUPPORT
from services.departments.service import SPEC as DEPARTMENTS
from services.identity.service import SPEC as IDENTITY
from services.tickets.app.handlers import Tickets
from services.tickets.copies import access_history, support
from services.tickets.service import SPEC as TICKETS
from shared.domain.business_hours import BusinessHours, WeeklyHours, expected_response_at
from shared.domain.events import NewEvent, RecordedEvent
from shared.eventstore import EventStore
from shared.readmodel.database import ReadModelDB
from shared.runtime.service import create_app
from shared.runtime.settings import ServiceSettings
from tests.conftest import fresh_database
from tests.http_util import eventually, serving
from tests.support.publishing import publishing_context

ADMIN_PASSWORD = "admin-password-for-tests"
IP = "203.0.113.9"
Headers = dict[str, str]


@dataclass
class Stack:
    identity: httpx.AsyncClient
    departments: httpx.AsyncClient
    clients: httpx.AsyncClient
    tickets: httpx.AsyncClient
    tickets_app: FastAPI
    notifier: EventStore
    admin: Headers
    identity_app: FastAPI | None = None
    clients_app: FastAPI | None = None

    @property
    def app(self) -> Tickets:
        app: Tickets = self.tickets_app.state.runtime.composed.tickets
        return app

    @property
    def db(self) -> ReadModelDB:
        db: ReadModelDB = self.tickets_app.state.runtime.db
        return db


def _settings(db_url: str, bootstrap: str, prefix: str, tmp: Path) -> ServiceSettings:
    return ServiceSettings(
        event_store_url=db_url,
        read_model_url=db_url,
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        trusted_proxies=["127.0.0.1/32"],
        var_dir=str(tmp),
    )


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    tmp = tmp_path_factory.mktemp("tickets")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ADMIN_PASSWORD", ADMIN_PASSWORD)
        async with (
            fresh_database() as identity_db,
            fresh_database() as departments_db,
            fresh_database() as clients_db,
            fresh_database() as tickets_db,
        ):
            identity_app = create_app(
                IDENTITY, _settings(identity_db, kafka_bootstrap, prefix, tmp / "i")
            )
            async with serving(identity_app) as identity_base:
                env.setenv("IDENTITY_URL", identity_base)
                apps = [
                    create_app(spec, _settings(url, kafka_bootstrap, prefix, tmp / spec.name))
                    for spec, url in (
                        (DEPARTMENTS, departments_db),
                        (CLIENTS, clients_db),
                        (TICKETS, tickets_db),
                    )
                ]
                async with (
                    serving(apps[0]) as departments_base,
                    serving(apps[1]) as clients_base,
                ):
                    env.setenv("CLIENTS_URL", clients_base)  # %client_person% is read there
                    async with (
                        serving(apps[2]) as tickets_base,
                        httpx.AsyncClient(base_url=identity_base, timeout=60) as identity,
                        httpx.AsyncClient(base_url=departments_base, timeout=60) as departments,
                        httpx.AsyncClient(base_url=clients_base, timeout=60) as clients,
                        httpx.AsyncClient(base_url=tickets_base, timeout=60) as tickets,
                        publishing_context("notifier", tmp, kafka_bootstrap, prefix) as notifier,
                    ):
                        admin = await login(identity, "admin", ADMIN_PASSWORD)
                        stack = Stack(
                            identity, departments, clients, tickets, apps[2], notifier, admin,
                            identity_app, apps[1],
                        )  # fmt: skip
                        for service in (departments, clients, tickets):
                            await eventually(
                                functools.partial(service.get, "/openapi.json"),
                                lambda r: r.status_code == 200,
                            )
                        for service, path in (
                            (tickets, "/tickets"),
                            (departments, "/departments"),
                            (clients, "/projects"),
                        ):  # each knows admin once identity.events reached it
                            await eventually(
                                functools.partial(service.get, path, headers=admin),
                                lambda r: r.status_code == 200,
                            )
                        # Technical support serves nobody here: each test picks its departments.
                        narrowed = await departments.patch(
                            f"/departments/{TECHNICAL_SUPPORT.department_id}",
                            json={"support": {"enabled": True, "providers": ["nobody"]}},
                            headers=admin,
                        )
                        assert narrowed.status_code == 200, narrowed.text
                        await until(
                            stack,
                            lambda conn: support.department(conn, TECHNICAL_SUPPORT.department_id),
                            lambda d: d is not None and d.providers == ("nobody",),
                        )
                        yield stack


# ---------------------------------------------------------------- helpers


async def until(
    stack: Stack,
    read: Callable[[Any], Awaitable[Any]],
    ok: Callable[[Any], bool],
    timeout: float = 30,
) -> Any:
    """Poll the tickets service's read-model database until ``ok(read(conn))``."""
    started = time.monotonic()
    while True:
        async with stack.db.engine.connect() as conn:
            found = await read(conn)
        if ok(found):
            return found
        assert time.monotonic() - started < timeout, f"never: {found!r}"
        await asyncio.sleep(0.05)


async def login(identity: httpx.AsyncClient, name: str, password: str) -> Headers:
    answer = await identity.post(
        "/auth/login", json={"login": name, "password": password}, headers={"X-Forwarded-For": IP}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}", "X-Forwarded-For": IP}


def unique(name: str) -> str:
    return f"{name}{uuid.uuid4().hex[:6]}"


async def project(stack: Stack) -> str:
    created = await stack.clients.post(
        "/projects", json={"name": unique("project")}, headers=stack.admin
    )
    assert created.status_code == 201, created.text
    project_id: str = created.json()["id"]
    return project_id


async def department(
    stack: Stack,
    name: str,
    *,
    providers: list[str],
    enabled: bool = True,
    sort: int = 0,
    description: str = "",
    charge: bool = False,
    schedule_id: str | None = None,
) -> str:
    """A department of the departments service, once the tickets service knows it."""
    body: dict[str, Any] = {
        "name": {"en": unique(name), "ru": name},
        "support": {
            "enabled": enabled,
            "providers": providers,
            "sort": sort,
            "description": description,
            "charge_requests": charge,
        },
    }
    if schedule_id is not None:
        body["schedule_id"] = schedule_id
    created = await stack.departments.post("/departments", json=body, headers=stack.admin)
    assert created.status_code == 201, created.text
    department_id: str = created.json()["id"]
    await until(stack, lambda conn: support.department(conn, department_id), bool)
    return department_id


async def staff(
    stack: Stack, name: str, rights: list[str], departments: list[str] | None = None
) -> tuple[str, Headers]:
    """A staff member with these individual rights, once the tickets service knows them."""
    login_name = unique(name)
    body = {
        "login": login_name,
        "password": f"{login_name}-password",
        "full_name": {"en": name.title(), "ru": name},
        "email": f"{login_name}@example.com",
        "departments": departments or [],
    }
    created = await eventually(  # identity learns new departments from their topic
        lambda: stack.identity.post("/staff", json=body, headers=stack.admin),
        lambda r: r.status_code != 422,
    )
    assert created.status_code == 201, created.text
    staff_id: str = created.json()["id"]
    for right in rights:
        granted = await stack.identity.post(
            f"/staff/{staff_id}/rights", json={"right": right}, headers=stack.admin
        )
        assert granted.status_code in (200, 201), granted.text
    headers = await login(stack.identity, login_name, f"{login_name}-password")
    runtime = stack.tickets_app.state.runtime

    def known() -> bool:
        access = runtime.access.by_principal.get(staff_id)
        return (
            access is not None
            and set(rights) <= set(access.rights)
            and set(departments or []) <= set(access.departments)
        )

    started = time.monotonic()
    while not known():
        assert time.monotonic() - started < 30, "tickets never learnt the staff member's access"
        await asyncio.sleep(0.05)
    return staff_id, headers


async def client(stack: Stack, name: str, project_id: str | None = None) -> tuple[str, Headers]:
    """A client of the clients service, logged in, once the tickets service knows them."""
    login_name = unique(name)
    body: dict[str, Any] = {
        "login": login_name,
        "password": f"Passw0rd-{login_name}",
        "email": f"{login_name}@example.com",
        "country": "DE",
        "customer_status": "individual",
        "contact_person": f"Person {name}",
    }
    if project_id:
        body["project_id"] = project_id
    created = await eventually(  # the clients service learns new projects from its projection
        lambda: stack.clients.post("/clients", json=body, headers=stack.admin),
        lambda r: r.status_code != 422,
    )
    assert created.status_code == 201, created.text
    client_id: str = created.json()["id"]
    headers = await login(stack.identity, login_name, f"Passw0rd-{login_name}")
    await until(
        stack,
        lambda conn: support.client(conn, client_id),
        lambda c: c is not None and c.project_id == project_id,
    )
    await eventually(
        lambda: stack.tickets.get("/tickets", headers=headers), lambda r: r.status_code == 200
    )
    return client_id, headers


async def open_ticket(
    stack: Stack, headers: Headers, department_id: str, **extra: Any
) -> dict[str, Any]:
    body = {"department_id": department_id, "subject": "Server down", "body": "Please help"}
    answer = await stack.tickets.post("/tickets", json={**body, **extra}, headers=headers)
    assert answer.status_code == 201, answer.text
    opened: dict[str, Any] = answer.json()
    return opened


async def read(stack: Stack, path: str, headers: Headers, position: int = 0) -> httpx.Response:
    return await stack.tickets.get(path, params={"min_position": position}, headers=headers)


async def seen_ids(stack: Stack, headers: Headers, position: int = 0, **params: Any) -> set[str]:
    answer = await stack.tickets.get(
        "/tickets", params={"min_position": position, "limit": 500, **params}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert int(answer.headers["X-Total-Count"]) >= len(answer.json())
    return {t["id"] for t in answer.json()}


# ---------------------------------------------------------------- departments for clients


async def test_a_client_is_offered_the_departments_of_their_project_by_sort(
    stack: Stack,
) -> None:
    main, other = await project(stack), await project(stack)
    schedule = await stack.departments.post(
        "/schedules",
        json={
            "name": unique("office"),
            "timezone": "Europe/Berlin",
            "weekly": {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": ["2026-12-31"],
        },
        headers=stack.admin,
    )
    assert schedule.status_code == 201, schedule.text
    billing = await department(
        stack, "Billing", providers=[main], sort=2, description="Invoices and payments",
        schedule_id=schedule.json()["id"],
    )  # fmt: skip
    hosting = await department(
        stack, "Hosting", providers=[main, other], sort=1, description="Servers"
    )
    await department(stack, "Hidden", providers=[main], enabled=False)
    charging = await department(stack, "Premium", providers=[main], sort=3, charge=True)
    await until(
        stack,
        lambda conn: support.hours_of(conn, billing),
        lambda h: h.timezone == "Europe/Berlin",
    )
    _, main_client = await client(stack, "offered", main)
    answer = await stack.tickets.get("/support/departments", headers=main_client)
    assert answer.status_code == 200, answer.text
    offered = answer.json()
    # The charging department is not offered while the balance is 0.
    assert [d["id"] for d in offered] == [hosting, billing]
    assert [d["description"] for d in offered] == ["Servers", "Invoices and payments"]
    due = datetime.fromisoformat(offered[1]["expected_response"])
    weekdays = ("mon", "tue", "wed", "thu", "fri")
    office = BusinessHours(
        "Europe/Berlin",
        WeeklyHours.model_validate({d: [("09:00", "18:00")] for d in weekdays}),
        (datetime(2026, 12, 31).date(),),
    )
    expected = expected_response_at(office, datetime.now(UTC), stack.app.response_hours)
    assert abs(due - expected) < timedelta(seconds=30)
    round_the_clock = datetime.fromisoformat(offered[0]["expected_response"])
    assert abs(round_the_clock - datetime.now(UTC) - timedelta(hours=4)) < timedelta(seconds=30)

    # One department offered: no description.
    _, other_client = await client(stack, "single", other)
    [only] = (await stack.tickets.get("/support/departments", headers=other_client)).json()
    assert only["id"] == hosting and only["description"] is None
    # A client without a project sees only departments that serve everyone.
    everyone = await department(stack, "Everyone", providers=[], sort=-1)
    _, no_project = await client(stack, "noproject")
    listed = (await stack.tickets.get("/support/departments", headers=no_project)).json()
    assert everyone in {d["id"] for d in listed} and hosting not in {d["id"] for d in listed}
    # (Closed again, so that other tests' clients are not offered it.)
    closed = await stack.departments.patch(
        f"/departments/{everyone}", json={"support": {"enabled": False}}, headers=stack.admin
    )
    assert closed.status_code == 200, closed.text
    await until(
        stack,
        lambda conn: support.department(conn, everyone),
        lambda d: d is not None and not d.support_enabled,
    )
    # Staff see every support department, or what one client is offered.
    _, viewer = await staff(stack, "viewer", ["tickets.view"])
    all_of_them = (await stack.tickets.get("/support/departments", headers=viewer)).json()
    assert {hosting, billing, charging} <= {d["id"] for d in all_of_them}
    bad = await stack.tickets.get(
        "/support/departments", params={"client_id": "nobody"}, headers=viewer
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "client_id"


# ---------------------------------------------------------------- opening


async def test_opening_checks_the_department_and_the_input(stack: Stack) -> None:
    main, other = await project(stack), await project(stack)
    served = await department(stack, "Served", providers=[main])
    elsewhere = await department(stack, "Elsewhere", providers=[other])
    closed = await department(stack, "Closed", providers=[main], enabled=False)
    client_id, headers = await client(stack, "opener", main)

    async def refused(body: dict[str, Any], field: str, who: Headers = headers) -> None:
        answer = await stack.tickets.post("/tickets", json=body, headers=who)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == field, answer.text

    good = {"department_id": served, "subject": "Hi", "body": "Help"}
    await refused({**good, "department_id": elsewhere}, "department_id")
    await refused({**good, "department_id": closed}, "department_id")
    await refused({**good, "department_id": "no-such-department"}, "department_id")
    await refused({**good, "subject": ""}, "subject")
    await refused({**good, "subject": "   "}, "subject")
    await refused({**good, "body": "x" * 20_001}, "body")
    await refused({k: v for k, v in good.items() if k != "body"}, "body")
    await refused({**good, "category_id": "no-such-category"}, "category_id")
    await refused({**good, "unknown": 1}, "unknown")
    await refused({**good, "department_id": 5}, "department_id")
    raw = await stack.tickets.post(
        "/tickets",
        content=b'{"department_id": ',
        headers={**headers, "content-type": "application/json"},
    )
    assert raw.status_code == 422

    opened = await open_ticket(stack, headers, served, subject="  Disk full  ")
    assert opened["version"] == 1 and opened["message_id"]
    ticket = (await read(stack, f"/tickets/{opened['id']}", headers, opened["position"])).json()
    assert ticket["subject"] == "Disk full" and ticket["status"] == "open"
    assert ticket["client_id"] == client_id and ticket["department_id"] == served
    assert ticket["origin"] == "client" and ticket["project_id"] == main
    assert ticket["waiting_since"] is not None and ticket["due_at"] is not None
    [first] = ticket["entries"]
    assert first["body"] == "Please help" and first["author_kind"] == "client"

    # Staff open on behalf of a client with tickets.reply, naming the client.
    _, helper = await staff(stack, "opener-staff", ["tickets.reply", "tickets.view"], [served])
    await refused(good, "client_id", helper)
    await refused({**good, "client_id": "nobody"}, "client_id", helper)
    on_behalf = await open_ticket(stack, helper, served, client_id=client_id)
    mine = await read(stack, f"/tickets/{on_behalf['id']}", headers, on_behalf["position"])
    assert mine.status_code == 200 and mine.json()["origin"] == "staff"
    _, mute = await staff(stack, "opener-mute", ["tickets.view"], [served])
    forbidden = await stack.tickets.post(
        "/tickets", json={**good, "client_id": client_id}, headers=mute
    )
    assert forbidden.status_code == 403
    assert (await stack.tickets.post("/tickets", json=good)).status_code == 401


# ---------------------------------------------------------------- visibility


async def test_a_department_created_a_moment_ago_takes_a_ticket_at_once(stack: Stack) -> None:
    """Issue 17, part 7: the department reaches tickets' copy through its topic a
    moment after the departments service answered; opening waits (bounded) for it."""
    main = await project(stack)
    _, headers = await client(stack, "early", main)
    body = {
        "name": {"en": unique("Fresh"), "ru": "Fresh"},
        "support": {"enabled": True, "providers": [main], "sort": 0, "description": "",
                    "charge_requests": False},
    }  # fmt: skip
    for _ in range(3):  # each time straight after the department's 201
        created = await stack.departments.post("/departments", json=body, headers=stack.admin)
        assert created.status_code == 201, created.text
        opened = await open_ticket(stack, headers, created.json()["id"])
        body["name"] = {"en": unique("Fresh"), "ru": "Fresh"}
    # A transfer to a department created a moment ago waits for it the same way.
    created = await stack.departments.post("/departments", json=body, headers=stack.admin)
    assert created.status_code == 201, created.text
    moved = await stack.tickets.post(
        f"/tickets/{opened['id']}/transfer",
        json={"department_id": created.json()["id"]},
        headers=stack.admin,
    )
    assert moved.status_code == 200, moved.text


async def test_visibility_matrix(stack: Stack) -> None:
    main = await project(stack)
    first = await department(stack, "First line", providers=[main])
    second = await department(stack, "Second line", providers=[main])
    alice_id, alice = await client(stack, "alice", main)
    _, bob = await client(stack, "bob", main)
    manager_id, manager = await client(stack, "manager", main)
    company = await stack.clients.post(
        "/companies", json={"name": unique("Co")}, headers=stack.admin
    )
    assert company.status_code == 201, company.text
    company_path = f"/companies/{company.json()['id']}/members"
    for member, is_manager in ((alice_id, False), (manager_id, True)):
        joined = await stack.clients.post(
            company_path, json={"client_id": member, "manager": is_manager}, headers=stack.admin
        )
        assert joined.status_code == 200, joined.text
    await until(
        stack,
        lambda conn: support.client(conn, alice_id),
        lambda c: c is not None and c.company_id == company.json()["id"],
    )
    # The manager's new token carries the company (identity learns it from clients).
    manager = await eventually_manager(stack, manager)

    viewing = ["tickets.view", "tickets.reply", "tickets.transfer"]
    _, first_staff = await staff(stack, "first", viewing, [first])
    _, second_staff = await staff(stack, "second", viewing, [second])
    _, everywhere = await staff(stack, "everywhere", ["tickets.view", "tickets.all_departments"])
    _, blind = await staff(stack, "blind", [], [first])

    alices = await open_ticket(stack, alice, first)
    bobs = await open_ticket(stack, bob, first)
    managers = await open_ticket(stack, manager, second)
    position = managers["position"]

    async def sees(headers: Headers, ticket: dict[str, Any]) -> bool:
        answer = await read(stack, f"/tickets/{ticket['id']}", headers, position)
        assert answer.status_code in (200, 404), answer.text
        return answer.status_code == 200

    matrix = {
        "alice": (alice, {"alice": True, "bob": False, "manager": False}),
        "bob": (bob, {"alice": False, "bob": True, "manager": False}),
        "manager": (manager, {"alice": True, "bob": False, "manager": True}),
        "first staff": (first_staff, {"alice": True, "bob": True, "manager": False}),
        "second staff": (second_staff, {"alice": False, "bob": False, "manager": True}),
        "all departments": (everywhere, {"alice": True, "bob": True, "manager": True}),
    }
    by_name = {"alice": alices, "bob": bobs, "manager": managers}
    for who, (headers, expected) in matrix.items():
        for name, ticket in by_name.items():
            assert await sees(headers, ticket) == expected[name], (who, name)
        listed = await seen_ids(stack, headers, position)
        visible = {by_name[n]["id"] for n, yes in expected.items() if yes}
        hidden = {by_name[n]["id"] for n, yes in expected.items() if not yes}
        assert visible <= listed and not hidden & listed, who
    assert (await read(stack, f"/tickets/{alices['id']}", blind)).status_code == 403
    assert (await stack.tickets.get("/tickets", headers=blind)).status_code == 403
    # Clients act only on their own tickets, the manager reads but does not reply.
    reply = {"body": "me too"}
    denied = await stack.tickets.post(f"/tickets/{bobs['id']}/messages", json=reply, headers=alice)
    assert denied.status_code == 404
    managed = await stack.tickets.post(
        f"/tickets/{alices['id']}/messages", json=reply, headers=manager
    )
    assert managed.status_code == 403

    # After a transfer to the second line, the first line no longer sees it.
    moved = await stack.tickets.post(
        f"/tickets/{alices['id']}/transfer", json={"department_id": second}, headers=first_staff
    )
    assert moved.status_code == 200, moved.text
    position = moved.json()["position"]
    assert not await sees(first_staff, alices) and await sees(second_staff, alices)
    assert alices["id"] not in await seen_ids(stack, first_staff, position)
    assert alices["id"] in await seen_ids(stack, second_staff, position)
    gone = await stack.tickets.post(
        f"/tickets/{alices['id']}/messages", json=reply, headers=first_staff
    )
    assert gone.status_code == 404

    # Staff logged in as Alice see what Alice sees, and her events name them.
    impersonator_id, impersonator = await staff(stack, "impersonator", ["clients.impersonate"])
    started = await stack.clients.post(f"/clients/{alice_id}/impersonate", headers=impersonator)
    assert started.status_code == 201, started.text
    as_alice = {"Authorization": f"Bearer {started.json()['access_token']}", "X-Forwarded-For": IP}
    await eventually(
        lambda: stack.tickets.get("/tickets", headers=as_alice), lambda r: r.status_code == 200
    )
    assert await sees(as_alice, alices) and not await sees(as_alice, bobs)
    written = await stack.tickets.post(
        f"/tickets/{alices['id']}/messages", json={"body": "written for Alice"}, headers=as_alice
    )
    assert written.status_code == 201, written.text
    [event] = await stack.app.store.read_stream(f"ticket-{alices['id']}", written.json()["version"])
    assert (event.actor.id, event.actor.kind, event.actor.impersonator_id) == (
        alice_id, "client", impersonator_id,
    )  # fmt: skip
    detail = await read(stack, f"/tickets/{alices['id']}", second_staff, written.json()["position"])
    last = detail.json()["entries"][-1]
    assert last["author_id"] == alice_id and last["impersonator_id"] == impersonator_id
    own_view = await read(stack, f"/tickets/{alices['id']}", alice)
    assert own_view.json()["entries"][-1]["impersonator_id"] is None


async def eventually_manager(stack: Stack, headers: Headers) -> Headers:
    """The manager's access in the tickets service names their company."""
    runtime = stack.tickets_app.state.runtime
    me = (await stack.identity.get("/me", headers=headers)).json()
    started = time.monotonic()
    while True:
        access = runtime.access.by_principal.get(me["id"])
        if access is not None and access.company_manager and access.company_id:
            return headers
        assert time.monotonic() - started < 30, "the manager's access never arrived"
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- the conversation


async def test_conversation_notes_collisions_closing_and_rating(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Desk", providers=[main])
    client_id, customer = await client(stack, "talker", main)
    rights = ["tickets.view", "tickets.reply", "tickets.internal_note", "tickets.close",
              "tickets.reopen", "tickets.assign"]  # fmt: skip
    anna_id, anna = await staff(stack, "anna", rights, [desk])
    boris_id, boris = await staff(stack, "boris", rights, [desk])
    opened = await open_ticket(stack, customer, desk)
    path = f"/tickets/{opened['id']}"

    # Both read version 1; Anna answers first, Boris's answer is refused with what changed.
    answer = await stack.tickets.post(
        f"{path}/messages", json={"body": "Rebooting it", "expected_version": 1}, headers=anna
    )
    assert answer.status_code == 201, answer.text
    note = await stack.tickets.post(
        f"{path}/messages", json={"body": "grumpy customer", "internal": True}, headers=anna
    )
    assert note.status_code == 201, note.text
    clash = await stack.tickets.post(
        f"{path}/messages", json={"body": "Have you tried…", "expected_version": 1}, headers=boris
    )
    assert clash.status_code == 409, clash.text
    error = clash.json()["error"]
    assert error["code"] == "ticket_changed" and error["current_version"] == 3
    assert [c["type"] for c in error["changes"]] == ["TicketMessagePosted"] * 2
    assert error["changes"][0]["body"] == "Rebooting it"
    assert error["changes"][0]["actor"]["id"] == anna_id and error["changes"][1]["internal"]
    in_query = await stack.tickets.post(
        f"{path}/messages", params={"expected_version": 2}, json={"body": "x"}, headers=boris
    )
    assert in_query.status_code == 409
    both = await stack.tickets.post(
        f"{path}/messages",
        params={"expected_version": 2},
        json={"body": "x", "expected_version": 3},
        headers=boris,
    )
    assert both.status_code == 422 and both.json()["error"]["field"] == "expected_version"
    assigned = await stack.tickets.post(
        f"{path}/assign", json={"staff_id": boris_id, "expected_version": 3}, headers=anna
    )
    assert assigned.status_code == 200, assigned.text
    stale = await stack.tickets.post(f"{path}/close", json={"expected_version": 3}, headers=boris)
    assert stale.status_code == 409
    assert [c["type"] for c in stale.json()["error"]["changes"]] == ["TicketAssigned"]

    # The client sees the reply, not the note, nor the assignment.
    mine = (await read(stack, path, customer, assigned.json()["position"])).json()
    assert mine["status"] == "answered" and mine["assignee_id"] == boris_id
    assert [e["type"] for e in mine["entries"]] == ["opened", "message"]
    assert "grumpy" not in str(mine)
    staff_view = (await read(stack, path, anna)).json()
    assert [e["type"] for e in staff_view["entries"]] == [
        "opened", "message", "internal_note", "assigned",
    ]  # fmt: skip
    # A client's version check sees only what the client may see.
    client_clash = await stack.tickets.post(
        f"{path}/messages", json={"body": "ok", "expected_version": 1}, headers=customer
    )
    assert client_clash.status_code == 409
    assert [c["type"] for c in client_clash.json()["error"]["changes"]] == ["TicketMessagePosted"]
    assert "grumpy" not in client_clash.text
    internal = await stack.tickets.post(
        f"{path}/messages", json={"body": "x", "internal": True}, headers=customer
    )
    assert internal.status_code == 403 and internal.json()["error"]["field"] == "internal"

    # Closed: staff must reopen to reply, the client's reply reopens it.
    closed = await stack.tickets.post(f"{path}/close", headers=customer)
    assert closed.status_code == 200, closed.text
    again = await stack.tickets.post(f"{path}/close", headers=customer)
    assert again.status_code == 200 and again.json()["version"] == closed.json()["version"]
    late = await stack.tickets.post(f"{path}/messages", json={"body": "late"}, headers=anna)
    assert late.status_code == 409 and late.json()["error"]["code"] == "ticket_closed"
    reopened_by_reply = await stack.tickets.post(
        f"{path}/messages", json={"body": "It broke again"}, headers=customer
    )
    assert reopened_by_reply.status_code == 201
    state = (await read(stack, path, anna, reopened_by_reply.json()["position"])).json()
    assert state["status"] == "open" and state["waiting_since"] is not None
    assert [e["type"] for e in state["entries"]][-3:] == ["closed", "reopened", "message"]
    staff_closed = await stack.tickets.post(f"{path}/close", headers=anna)
    reopened = await stack.tickets.post(f"{path}/reopen", headers=boris)
    assert staff_closed.status_code == 200 and reopened.status_code == 200

    # Ratings: a staff reply or the whole ticket, by the client only.
    reply_id = answer.json()["message_id"]
    rated = await stack.tickets.post(
        f"{path}/rate", json={"score": 5, "message_id": reply_id}, headers=customer
    )
    assert rated.status_code == 200, rated.text
    whole = await stack.tickets.post(f"{path}/rate", json={"score": 4}, headers=customer)
    assert whole.status_code == 200
    for body, field in (
        ({"score": 6}, "score"),
        ({"score": "5"}, "score"),
        ({"score": 3, "message_id": note.json()["message_id"]}, "message_id"),
        ({"score": 3, "message_id": opened["message_id"]}, "message_id"),
    ):
        bad = await stack.tickets.post(f"{path}/rate", json=body, headers=customer)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == field, bad.text
    by_staff = await stack.tickets.post(f"{path}/rate", json={"score": 1}, headers=anna)
    assert by_staff.status_code == 403
    final = (await read(stack, path, customer, whole.json()["position"])).json()
    assert final["rating"] == 4 and final["client_id"] == client_id

    # The queue: filters, sort by waiting time, pages and the total.
    second = await open_ticket(stack, customer, desk, subject="Second")
    third = await open_ticket(stack, customer, desk, subject="Third")
    answered = await stack.tickets.post(
        f"/tickets/{second['id']}/messages", json={"body": "done"}, headers=anna
    )
    page = await stack.tickets.get(
        "/tickets",
        params={"department_id": desk, "status": "open", "limit": 1,
                "min_position": answered.json()["position"]},
        headers=anna,
    )  # fmt: skip
    assert page.status_code == 200 and page.headers["X-Total-Count"] == "2"
    assert [t["id"] for t in page.json()] == [opened["id"]]  # waiting the longest
    next_page = await stack.tickets.get(
        "/tickets", params={"department_id": desk, "status": "open", "limit": 1, "offset": 1},
        headers=anna,
    )  # fmt: skip
    assert [t["id"] for t in next_page.json()] == [third["id"]]
    by_deadline = await stack.tickets.get(
        "/tickets", params={"department_id": desk, "sort": "deadline"}, headers=anna
    )
    assert [t["id"] for t in by_deadline.json()][:2] == [opened["id"], third["id"]]
    assert by_deadline.headers["X-Total-Count"] == "3"
    assigned_to_boris = await seen_ids(stack, anna, assignee_id=boris_id)
    assert assigned_to_boris == {opened["id"]}
    nobody = await seen_ids(stack, anna, assignee_id="none", department_id=desk)
    assert nobody == {second["id"], third["id"]}
    assert await seen_ids(stack, anna, client_id=client_id) == {
        opened["id"], second["id"], third["id"],
    }  # fmt: skip
    for params, field in (
        ({"status": "lost"}, "status"),
        ({"sort": "password"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
    ):
        bad = await stack.tickets.get("/tickets", params=params, headers=anna)
        assert bad.status_code == 422 and bad.json()["error"]["field"].startswith(field)


async def test_transfers_and_the_notice_cap(stack: Stack) -> None:
    main = await project(stack)
    lines = [await department(stack, f"Line {n}", providers=[main]) for n in range(3)]
    _, customer = await client(stack, "moved", main)
    router_id, router_staff = await staff(
        stack, "router", ["tickets.view", "tickets.transfer"], lines
    )
    other_id, _ = await staff(stack, "taker", ["tickets.view"], [lines[1]])
    outsider_id, _ = await staff(stack, "outsider", ["tickets.view"], [lines[0]])
    opened = await open_ticket(stack, customer, lines[0])
    path = f"/tickets/{opened['id']}"
    version = 1
    for target in (lines[1], lines[2], lines[0], lines[1], lines[2]):
        moved = await stack.tickets.post(
            f"{path}/transfer",
            json={"department_id": target, "expected_version": version},
            headers=router_staff,
        )
        assert moved.status_code == 200, moved.text
        version = moved.json()["version"]
    to_person = await stack.tickets.post(
        f"{path}/transfer", json={"department_id": lines[1], "staff_id": other_id},
        headers=router_staff,
    )  # fmt: skip
    assert to_person.status_code == 200, to_person.text
    mine = (await read(stack, path, customer, to_person.json()["position"])).json()
    notices = [e for e in mine["entries"] if e["type"] == "transfer"]
    assert len(notices) == 3  # the default setting: at most 3 notices for the client
    staff_view = (await read(stack, path, router_staff)).json()
    assert len([e for e in staff_view["entries"] if e["type"] == "transfer"]) == 6
    assert staff_view["department_id"] == lines[1] and staff_view["assignee_id"] == other_id

    for body, field in (
        ({}, "department_id"),
        ({"department_id": "nowhere"}, "department_id"),
        ({"staff_id": "nobody"}, "staff_id"),
        ({"staff_id": outsider_id}, "staff_id"),  # not in the ticket's department
        ({"department_id": lines[0], "staff_id": other_id}, "staff_id"),
        ({"department_id": lines[0], "extra": 1}, "extra"),
    ):
        bad = await stack.tickets.post(f"{path}/transfer", json=body, headers=router_staff)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == field, (body, bad.text)
    _, no_right = await staff(stack, "no-transfer", ["tickets.view"], lines)
    refused = await stack.tickets.post(
        f"{path}/transfer", json={"department_id": lines[0]}, headers=no_right
    )
    assert refused.status_code == 403
    assert router_id


# ---------------------------------------------------------------- messages to clients


async def test_a_message_to_a_client_opens_a_thread_with_replies_forbidden(
    stack: Stack,
) -> None:
    main = await project(stack)
    desk = await department(stack, "Abuse desk", providers=[main])
    client_id, customer = await client(stack, "messaged", main)
    sender_id, sender = await staff(
        stack, "sender", ["clients.message", "clients.view", "tickets.view", "tickets.reply"]
    )
    _, desk_staff = await staff(stack, "desk", ["tickets.view"], [desk])
    deadline = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    sent = await stack.clients.post(
        "/clients/messages",
        json={
            "client_ids": [client_id],
            "subject": "Abuse report",
            "text": "Your server sends spam",
            "forbid_replies": True,
            "assign_replies_to_me": True,
            "violation": {"deadline": deadline, "on_no_reaction": "move_to_active"},
        },
        headers=sender,
    )
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["id"]
    listed = await eventually(
        lambda: stack.tickets.get("/tickets", headers=customer),
        lambda r: r.status_code == 200 and len(r.json()) == 1,
    )
    [thread] = listed.json()
    assert thread["origin"] == "client_message" and thread["message_ref"] == message_id
    assert thread["subject"] is None and thread["replies_forbidden"]
    assert thread["department_id"] is None and thread["assignee_id"] == sender_id
    assert thread["status"] == "answered"
    path = f"/tickets/{thread['id']}"
    detail = (await read(stack, path, customer)).json()
    [first] = detail["entries"]
    assert first["body"] is None and first["details"]["message_ref"] == message_id
    # The text stays with the clients service, sealed: read there by reference.
    texts = await eventually(
        lambda: stack.clients.get(f"/clients/{client_id}/messages", headers=customer),
        lambda r: r.status_code == 200 and len(r.json()) == 1,
    )
    assert texts.json()[0]["message_id"] == message_id
    assert texts.json()[0]["text"] == "Your server sends spam"
    refused = await stack.tickets.post(
        f"{path}/messages", json={"body": "not me"}, headers=customer
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "replies_forbidden"
    # The messages queue: the sender (assignee, may message clients) sees it, the desk does not.
    assert thread["id"] in await seen_ids(stack, sender, department_id="none")
    assert (await read(stack, path, desk_staff)).status_code == 404
    assert thread["id"] not in await seen_ids(stack, desk_staff)

    # No reaction by the deadline: the notifier says so, clients record it, the thread waits.
    for _ in range(2):  # redelivered: harmless
        await stack.notifier.append(
            f"deadline-{message_id}",
            [NewEvent(type="DeadlineExpired", data={
                "kind": "abuse_notice", "client_id": client_id, "message_id": message_id,
            })],
        )  # fmt: skip
    active = await eventually(
        lambda: stack.tickets.get(path, headers=sender),
        lambda r: r.status_code == 200 and r.json()["status"] == "open",
    )
    assert active.json()["due_at"] is not None
    kinds = [e.type for e in await stack.app.store.read_stream(f"ticket-{thread['id']}")]
    assert kinds == ["TicketOpened", "TicketReopened"]
    # Transferred to a department, it joins that department's queue.
    _, router_staff = await staff(stack, "thread-router", ["tickets.view", "tickets.transfer",
                                                          "clients.message"])  # fmt: skip
    moved = await stack.tickets.post(
        f"{path}/transfer", json={"department_id": desk}, headers=router_staff
    )
    assert moved.status_code == 200, moved.text
    assert thread["id"] in await seen_ids(stack, desk_staff, moved.json()["position"])


async def events_of(
    app: FastAPI | None, correlation_id: uuid.UUID, skip: frozenset[str] | set[str] = frozenset()
) -> list[RecordedEvent]:
    """The events of one service's store in one correlation, in order (but ``skip``'s types)."""
    assert app is not None
    found = await app.state.runtime.store.read_all(0, 100_000)
    return [e for e in found if e.correlation_id == correlation_id and e.type not in skip]


async def test_one_correlation_id_follows_a_request_across_services(stack: Stack) -> None:
    """Events appended for a request, by a service it called, and by consumers down the
    line carry its correlation id; each consumer's events name the event that caused them."""
    main = await project(stack)
    # A request to clients, which hands the credentials to identity over HTTP.
    registering = uuid.uuid4()
    login_name = unique("traced")
    created = await eventually(  # the clients service learns new projects from its projection
        lambda: stack.clients.post(
            "/clients",
            json={
                "login": login_name, "password": f"Passw0rd-{login_name}",
                "email": f"{login_name}@example.com", "country": "DE",
                "customer_status": "individual", "project_id": main,
            },
            headers={**stack.admin, "x-correlation-id": str(registering)},
        ),
        lambda r: r.status_code != 422,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.headers["x-correlation-id"] == str(registering)
    client_id = created.json()["id"]
    assert "ClientRegistered" in [e.type for e in await events_of(stack.clients_app, registering)]
    in_identity = await events_of(stack.identity_app, registering)
    assert in_identity and all(e.causation_id is None for e in in_identity)
    # A message with a deadline: clients records it, tickets opens a thread from the topic.
    _, sender = await staff(stack, "tracer", ["clients.message", "clients.view", "tickets.view"])
    messaging = uuid.uuid4()
    deadline = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    sent = await stack.clients.post(
        "/clients/messages",
        json={
            "client_ids": [client_id], "subject": "Abuse", "text": "Spam from your server",
            "violation": {"deadline": deadline, "on_no_reaction": "move_to_active"},
        },
        headers={**sender, "x-correlation-id": str(messaging)},
    )  # fmt: skip
    assert sent.status_code == 201, sent.text
    [messaged] = [
        e for e in await events_of(stack.clients_app, messaging) if e.type == "ClientMessaged"
    ]
    opened = await eventually(  # the thread's opening (its number's event aside)
        lambda: events_of(stack.tickets_app, messaging, skip={"TicketNumberTaken"}),
        lambda found: len(found) == 1,
    )
    assert opened[0].type == "TicketOpened" and opened[0].causation_id == messaged.event_id
    # The notifier's deadline, in its own correlation: two hops further.
    expiring = uuid.uuid4()
    expired = NewEvent(type="DeadlineExpired", correlation_id=expiring, data={
        "kind": "abuse_notice", "client_id": client_id, "message_id": sent.json()["id"],
    })  # fmt: skip
    await stack.notifier.append(f"deadline-{sent.json()['id']}", [expired])
    reacted = await eventually(
        lambda: events_of(stack.clients_app, expiring), lambda found: len(found) == 1
    )
    assert reacted[0].type == "AbuseNoticeExpired"
    assert reacted[0].causation_id == expired.event_id
    reopened = await eventually(
        lambda: events_of(stack.tickets_app, expiring), lambda found: len(found) == 1
    )
    assert reopened[0].type == "TicketReopened"
    assert reopened[0].causation_id == reacted[0].event_id


# ---------------------------------------------------------------- deadlines from the notifier


async def test_silent_tickets_close_and_ratings_are_requested_on_the_notifiers_word(
    stack: Stack,
) -> None:
    main = await project(stack)
    desk = await department(stack, "Slow desk", providers=[main])
    _, customer = await client(stack, "silent", main)
    _, agent = await staff(stack, "agent", ["tickets.view", "tickets.reply"], [desk])
    opened = await open_ticket(stack, customer, desk)
    path = f"/tickets/{opened['id']}"
    replied = await stack.tickets.post(f"{path}/messages", json={"body": "Fixed?"}, headers=agent)
    assert replied.status_code == 201
    reply_id = replied.json()["message_id"]
    [posted] = await stack.app.store.read_stream(f"ticket-{opened['id']}", 2)
    close_due = datetime.fromisoformat(posted.data["close_due_at"])
    assert timedelta(days=6, hours=23) < close_due - datetime.now(UTC) <= timedelta(days=7)

    async def expire(kind: str, **data: str) -> None:
        fact = {"kind": kind, "ticket_id": opened["id"], **data}
        await stack.notifier.append(
            f"deadline-{uuid.uuid4()}", [NewEvent(type="DeadlineExpired", data=fact)]
        )

    # Too early (the deadline is a week away): nothing happens.
    await expire("rating_request", message_id=reply_id)
    await eventually(
        lambda: stack.tickets.get(path, headers=customer),
        # 404 until the queue has the ticket (this read asks for no position to wait for)
        lambda r: r.status_code == 200 and r.json()["entries"][-1]["type"] == "rating_requested",
    )
    await expire("ticket_auto_close")
    await asyncio.sleep(1)
    assert (await stack.tickets.get(path, headers=customer)).json()["status"] == "answered"
    # A week later by the service's clock, the same deadline closes it.
    real_clock = stack.app.clock
    stack.app.clock = lambda: real_clock() + timedelta(days=7, minutes=1)
    try:
        await expire("ticket_auto_close")
        closed = await eventually(
            lambda: stack.tickets.get(path, headers=customer),
            lambda r: r.json()["status"] == "closed",
        )
    finally:
        stack.app.clock = real_clock
    assert closed.json()["close_reason"] == "auto"
    kinds = [e.type for e in await stack.app.store.read_stream(f"ticket-{opened['id']}")]
    assert kinds.count("TicketClosed") == 1 and kinds.count("TicketRatingRequested") == 1


# ---------------------------------------------------------------- announcements and paid requests


async def test_a_blocking_announcement_stops_new_tickets(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Blocked desk", providers=[main])
    client_id, customer = await client(stack, "blocked", main)
    _, helper = await staff(stack, "blocked-helper", ["tickets.view", "tickets.reply"], [desk])
    published = await stack.tickets.post(
        "/announcements",
        json={
            "text": "Data center migration",
            "ends_at": (datetime.now(UTC) + timedelta(minutes=10)).isoformat(),
            "blocking": True,
        },
        headers=stack.admin,
    )
    assert published.status_code == 201, published.text
    try:
        body = {"department_id": desk, "subject": "s", "body": "b"}
        blocked = await stack.tickets.post("/tickets", json=body, headers=customer)
        assert blocked.status_code == 409, blocked.text
        assert blocked.json()["error"]["code"] == "blocked_by_announcement"
        # Bad input is still named first.
        bad = await stack.tickets.post("/tickets", json={**body, "subject": ""}, headers=customer)
        assert bad.status_code == 422
        # Staff may still open one on the client's behalf (a call to the hotline, say).
        await open_ticket(stack, helper, desk, client_id=client_id)
    finally:
        ended = await stack.tickets.delete(
            f"/announcements/{published.json()['id']}", headers=stack.admin
        )
        assert ended.status_code == 200, ended.text
    await open_ticket(stack, customer, desk)


async def test_paid_requests_run_out(stack: Stack) -> None:
    main = await project(stack)
    paid_desk = await department(stack, "Paid desk", providers=[main], charge=True, sort=1)
    free_desk = await department(stack, "Free desk", providers=[main], sort=2)
    client_id, customer = await client(stack, "payer", main)
    offered = (await stack.tickets.get("/support/departments", headers=customer)).json()
    assert [d["id"] for d in offered] == [free_desk]
    none_left = await stack.tickets.post(
        "/tickets", json={"department_id": paid_desk, "subject": "s", "body": "b"}, headers=customer
    )
    assert none_left.status_code == 402, none_left.text
    assert none_left.json()["error"]["code"] == "no_paid_requests"
    credited = await stack.tickets.post(
        f"/clients/{client_id}/paid-requests", json={"amount": 1}, headers=stack.admin
    )
    assert credited.status_code in (200, 201), credited.text
    offered = (await stack.tickets.get("/support/departments", headers=customer)).json()
    assert [d["id"] for d in offered] == [paid_desk, free_desk]
    paid = await open_ticket(stack, customer, paid_desk)
    detail = (await read(stack, f"/tickets/{paid['id']}", customer, paid["position"])).json()
    assert detail["paid"]
    again = await stack.tickets.post(
        "/tickets", json={"department_id": paid_desk, "subject": "s", "body": "b"}, headers=customer
    )
    assert again.status_code == 402 and again.json()["error"]["code"] == "no_paid_requests"
    offered = (await stack.tickets.get("/support/departments", headers=customer)).json()
    assert [d["id"] for d in offered] == [free_desk]
    # A paid category in a free department takes one too.
    category = await stack.tickets.post(
        "/categories",
        json={"topic": "Urgent", "department_id": free_desk, "paid": True},
        headers=stack.admin,
    )
    assert category.status_code == 201, category.text
    category_id = category.json()["id"]
    urgent = await stack.tickets.post(
        "/tickets",
        json={"department_id": free_desk, "category_id": category_id, "subject": "s", "body": "b"},
        headers=customer,
    )
    assert urgent.status_code == 402, urgent.text
    wrong = await stack.tickets.post(
        "/tickets",
        json={"department_id": paid_desk, "category_id": category_id, "subject": "s", "body": "b"},
        headers=customer,
    )
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "category_id"
    balance = await stack.tickets.get(f"/clients/{client_id}/paid-requests", headers=stack.admin)
    assert balance.json()["balance"] == 0


# ---------------------------------------------------------------- bad input, rights, erasure


async def test_every_command_answers_bad_input_with_the_field(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Strict desk", providers=[main])
    _, customer = await client(stack, "strict", main)
    everything = ["tickets.view", "tickets.reply", "tickets.internal_note", "tickets.assign",
                  "tickets.transfer", "tickets.close", "tickets.reopen"]  # fmt: skip
    _, agent = await staff(stack, "strict-agent", everything, [desk])
    opened = await open_ticket(stack, customer, desk)
    path = f"/tickets/{opened['id']}"
    calls: list[tuple[str, dict[str, Any] | None, dict[str, Any], str]] = [
        ("/messages", {"body": ""}, {}, "body"),
        ("/messages", {"body": "   "}, {}, "body"),
        ("/messages", {}, {}, "body"),
        ("/messages", {"body": "x", "internal": "maybe"}, {}, "internal"),
        ("/messages", {"body": "x", "expected_version": 0}, {}, "expected_version"),
        ("/messages", {"body": "x", "expected_version": 99}, {}, "expected_version"),
        ("/messages", {"body": "x"}, {"expected_version": "one"}, "expected_version"),
        ("/assign", {}, {}, "staff_id"),
        ("/assign", {"staff_id": "nobody"}, {}, "staff_id"),
        ("/assign", {"staff_id": ""}, {}, "staff_id"),
        ("/transfer", {"staff_id": 7}, {}, "staff_id"),
        ("/close", {"expected_version": "x"}, {}, "expected_version"),
        ("/reopen", {"unknown": True}, {}, "unknown"),
        ("/rate", {}, {}, "score"),
    ]
    for suffix, body, params, field in calls:
        headers = customer if suffix == "/rate" else agent
        answer = await stack.tickets.post(path + suffix, json=body, params=params, headers=headers)
        assert answer.status_code == 422, (suffix, body, answer.text)
        assert answer.json()["error"]["field"] == field, (suffix, body, answer.text)
    missing = f"/tickets/{uuid.uuid4()}"
    for suffix, body in (
        ("/messages", {"body": "x"}),
        ("/close", None),
        ("/reopen", None),
        ("/assign", {"staff_id": None}),
        ("/transfer", {"department_id": desk}),
    ):
        answer = await stack.tickets.post(missing + suffix, json=body, headers=agent)
        assert answer.status_code == 404, (suffix, answer.text)
    assert (await stack.tickets.get(missing, headers=agent)).status_code == 404
    # Rights: a staff member who sees the ticket still needs the right for each command.
    _, reader = await staff(stack, "strict-reader", ["tickets.view"], [desk])
    for suffix, body in (
        ("/messages", {"body": "x"}),
        ("/messages", {"body": "x", "internal": True}),
        ("/assign", {"staff_id": None}),
        ("/transfer", {"department_id": desk}),
        ("/close", None),
        ("/reopen", None),
    ):
        answer = await stack.tickets.post(path + suffix, json=body, headers=reader)
        assert answer.status_code == 403, (suffix, answer.text)
    assert (
        await stack.tickets.post(path + "/assign", json={"staff_id": None}, headers=customer)
    ).status_code == 403
    assert (await stack.tickets.get(path)).status_code == 401


async def test_an_erased_clients_ticket_texts_become_unreadable(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Erasure desk", providers=[main])
    client_id, customer = await client(stack, "forgotten", main)
    _, agent = await staff(stack, "erasure-agent", ["tickets.view", "tickets.reply"], [desk])
    opened = await open_ticket(
        stack, customer, desk, subject="Secret-subject-42", body="Secret body"
    )
    replied = await stack.tickets.post(
        f"/tickets/{opened['id']}/messages", json={"body": "Secret reply"}, headers=agent
    )
    assert replied.status_code == 201
    raw = str([e.data for e in await stack.app.store.read_stream(f"ticket-{opened['id']}")])
    assert "Secret" not in raw  # sealed in the store (and so on the topic)
    before = (
        await read(stack, f"/tickets/{opened['id']}", agent, replied.json()["position"])
    ).json()
    assert before["subject"] == "Secret-subject-42"
    erased = await stack.clients.delete(f"/clients/{client_id}", headers=stack.admin)
    assert erased.status_code == 200, erased.text
    after = await eventually(
        lambda: stack.tickets.get(f"/tickets/{opened['id']}", headers=agent),
        lambda r: r.json()["subject"] is None,
    )
    assert "Secret" not in after.text
    ticket = await stack.app.load(opened["id"])
    assert ticket.exists and all(c.details.get("body") is None for c in ticket.history[1:])
    refused = await stack.tickets.post(
        f"/tickets/{opened['id']}/messages", json={"body": "anyone there?"}, headers=agent
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "client_erased"


async def test_a_template_autofills_for_a_ticket(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Template desk", providers=[main])
    _, customer = await client(stack, "templated", main)
    writer_id, writer = await staff(
        stack, "writer", ["tickets.view", "tickets.reply", "clients.view"], [desk]
    )
    _, no_clients = await staff(stack, "writer-blind", ["tickets.view", "tickets.reply"], [desk])
    template = await stack.tickets.post(
        "/templates",
        json={
            "name": unique("greeting"),
            "subject": "Re: %ticket_subject% [%ticket_id%]",
            "body": "Dear %client_person%, %department% here. Regards, %admin_name%",
        },
        headers=stack.admin,
    )
    assert template.status_code == 201, template.text
    opened = await open_ticket(stack, customer, desk, subject="Mail bounces")
    # The writer's name comes from identity.events.
    await until(stack, lambda conn: support.staff_name(conn, writer_id), bool)
    path = f"/tickets/{opened['id']}/autofill"
    filled = await stack.tickets.get(
        path, params={"template_id": template.json()["id"]}, headers=writer
    )
    assert filled.status_code == 200, filled.text
    assert filled.json()["subject"] == f"Re: Mail bounces [{opened['id']}]"
    body = filled.json()["body"]
    assert body.startswith("Dear Person templated, Template desk") and body.endswith("Writer")
    # Without clients.view the client's name stays out.
    blind = await stack.tickets.get(
        path, params={"template_id": template.json()["id"]}, headers=no_clients
    )
    assert blind.json()["body"].startswith("Dear , ")
    unknown = await stack.tickets.get(path, params={"template_id": "nope"}, headers=writer)
    assert unknown.status_code == 404
    missing = await stack.tickets.get(path, headers=writer)
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "template_id"
    by_client = await stack.tickets.get(
        path, params={"template_id": template.json()["id"]}, headers=customer
    )
    assert by_client.status_code == 403


# ---------------------------------------------------------------- who could see it, when


async def test_who_could_see_a_ticket_at_a_moment_comes_from_the_log(stack: Stack) -> None:
    main = await project(stack)
    first = await department(stack, "Viewers first", providers=[main])
    second = await department(stack, "Viewers second", providers=[main])
    alice_id, alice = await client(stack, "viewed", main)
    member_id, member = await staff(stack, "member", ["tickets.view"], [first])
    other_id, other = await staff(stack, "other", ["tickets.view"], [second])
    everywhere_id, _ = await staff(stack, "allseer", ["tickets.view", "tickets.all_departments"])
    opened = await open_ticket(stack, alice, first)
    ticket_id = opened["id"]
    path = f"/tickets/{ticket_id}/viewers"
    await until(  # the access facts so far are in the history
        stack,
        lambda conn: access_history.one_as_of(conn, everywhere_id, datetime.now(UTC)),
        lambda found: found is not None and "tickets.all_departments" in found.rights,
    )
    moment = datetime.now(UTC)

    # The member leaves the department after the moment asked about.
    moved = await stack.identity.patch(
        f"/staff/{member_id}", json={"departments": [second]}, headers=stack.admin
    )
    assert moved.status_code == 200, moved.text
    await until(
        stack,
        lambda conn: access_history.one_as_of(conn, member_id, datetime.now(UTC)),
        lambda found: found is not None and found.departments == (second,),
    )

    then = await stack.tickets.get(
        path,
        params={"at": moment.isoformat(), "min_position": opened["position"]},
        headers=stack.admin,
    )
    assert then.status_code == 200, then.text
    body = then.json()
    assert body["existed"] and body["department_id"] == first
    reasons = {s["id"]: s["reasons"] for s in body["staff"]}
    assert reasons[member_id] == ["department"]
    assert reasons[everywhere_id] == ["all_departments"]
    assert (
        "full_access"
        in reasons[(await stack.identity.get("/me", headers=stack.admin)).json()["id"]]
    )
    assert other_id not in reasons
    assert [c["id"] for c in body["clients"]] == [alice_id]
    assert body["clients"][0]["reasons"] == ["client"]
    assert body["history_from"] is not None

    now = await read(stack, path, stack.admin)
    assert now.status_code == 200, now.text
    now_staff = {s["id"] for s in now.json()["staff"]}
    assert member_id not in now_staff and everywhere_id in now_staff

    # Before it was opened, nobody could see it.
    before = await stack.tickets.get(
        path, params={"at": (moment - timedelta(days=1)).isoformat()}, headers=stack.admin
    )
    assert before.status_code == 200, before.text
    assert not before.json()["existed"] and before.json()["staff"] == []

    # Staff who cannot see the ticket now get 404, clients 403, a bad moment 422 on ``at``.
    assert (await read(stack, path, other)).status_code == 404
    assert (await read(stack, path, member)).status_code == 404
    assert (await read(stack, path, alice)).status_code == 403
    bad = await stack.tickets.get(path, params={"at": "yesterday"}, headers=stack.admin)
    assert bad.status_code == 422 and "at" in bad.text, bad.text


async def test_counts_per_status_are_the_lists_totals(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Counted", providers=[main])
    _, customer = await client(stack, "counted", main)
    _, member = await staff(stack, "counter", ["tickets.view", "tickets.close"], [desk])
    first = await open_ticket(stack, customer, desk)
    await open_ticket(stack, customer, desk)
    closed = await stack.tickets.post(f"/tickets/{first['id']}/close", headers=member)
    assert closed.status_code == 200, closed.text
    position = closed.json()["position"]
    counts = await stack.tickets.get(
        "/tickets/counts",
        params={"department_id": desk, "min_position": position},
        headers=member,
    )
    assert counts.status_code == 200, counts.text
    assert counts.json() == {"open": 1, "answered": 0, "closed": 1}
    for status, count in counts.json().items():
        listed = await stack.tickets.get(
            "/tickets", params={"department_id": desk, "status": status}, headers=member
        )
        assert int(listed.headers["X-Total-Count"]) == count, status
        assert "X-Status-Counts" not in listed.headers  # only when asked for
    # The same counts with the page (counts=true), whatever status the page shows; the
    # page's total is its statuses' sum.
    for shown, total in (([], 2), (["closed"], 1), (["open", "closed"], 2)):
        listed = await stack.tickets.get(
            "/tickets",
            params={"department_id": desk, "status": shown, "counts": "true"},
            headers=member,
        )
        assert listed.status_code == 200, listed.text
        assert listed.headers["X-Status-Counts"] == "open=1, answered=0, closed=1"
        assert int(listed.headers["X-Total-Count"]) == total == len(listed.json()), shown
    # The client's own view, and a staff member without the right is refused.
    mine = await read(stack, "/tickets/counts", customer, position)
    assert mine.status_code == 200 and mine.json()["open"] >= 1, mine.text
    _, blind = await staff(stack, "uncounted", [])
    assert (await stack.tickets.get("/tickets/counts", headers=blind)).status_code == 403
