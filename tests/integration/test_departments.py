"""The departments service over real HTTP, with the real identity service beside it.

Both run on PostgreSQL (a database each) and talk through the real broker:
departments learns who may do what from ``identity.events``, identity learns
departments and their rights from ``departments.events``. One pair of running
apps is shared by the tests of this module (consumer-group joins on the local
broker take seconds each); every test makes its own departments and staff.
Addresses are set with X-Forwarded-For, believed from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.departments.app.handlers import Departments
from services.departments.domain.defaults import SALES, TECHNICAL_SUPPORT
from services.departments.projections import departments as department_rows
from services.departments.projections import schedules as schedule_rows
from services.departments.service import SPEC as DEPARTMENTS
from services.identity.service import SPEC as IDENTITY
from shared.domain import rights as catalogue
from shared.eventstore import open_event_store
from shared.readmodel.database import ReadModelDB
from shared.runtime.service import create_app
from shared.runtime.settings import ServiceSettings
from tests.conftest import fresh_database
from tests.http_util import eventually, serving

ADMIN_PASSWORD = "admin-password-for-department-tests"
DEFAULT_IDS = {SALES.department_id, TECHNICAL_SUPPORT.department_id}
DEFAULT_EVENTS = len(SALES.events()) + len(TECHNICAL_SUPPORT.events())
WEEKDAYS = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


# ---------------------------------------------------------------- databases and apps


def settings(database: str, kafka: str, prefix: str, var: Path) -> ServiceSettings:
    return ServiceSettings(
        event_store_url=database,
        read_model_url=database,
        kafka_bootstrap_servers=kafka,
        topic_prefix=prefix,
        trusted_proxies=["127.0.0.1/32"],
        var_dir=str(var),
    )


@dataclass
class Stack:
    """Identity and departments, running; an admin session valid at both."""

    identity: httpx.AsyncClient
    departments: httpx.AsyncClient
    admin: dict[str, str]
    departments_db: str


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    var = tmp_path_factory.mktemp("var")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ADMIN_PASSWORD", ADMIN_PASSWORD)
        async with (
            fresh_database() as identity_db,
            fresh_database() as departments_db,
            serving(create_app(IDENTITY, settings(identity_db, kafka_bootstrap, prefix, var))) as i,
            serving(
                create_app(DEPARTMENTS, settings(departments_db, kafka_bootstrap, prefix, var))
            ) as d,
            httpx.AsyncClient(base_url=i) as identity,
            httpx.AsyncClient(base_url=d) as departments,
        ):
            admin = await login(identity, "admin", ADMIN_PASSWORD)
            # Departments knows the admin once identity.events has reached it.
            await eventually(
                lambda: departments.get("/departments", headers=admin),
                lambda r: r.status_code == 200,
            )
            yield Stack(identity, departments, admin, departments_db)


async def login(client: httpx.AsyncClient, name: str, password: str) -> dict[str, str]:
    ip = "127.0.0.1"
    answer = await client.post(
        "/auth/login", json={"login": name, "password": password}, headers={"X-Forwarded-For": ip}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}", "X-Forwarded-For": ip}


def unique(name: str) -> str:
    return f"{name}{uuid.uuid4().hex[:6]}"


async def add_staff(
    s: Stack, login_name: str, departments: list[str]
) -> tuple[str, dict[str, str]]:
    """A staff member at identity (once identity knows the departments), logged in."""
    body = {
        "login": login_name,
        "password": f"{login_name}-password",
        "full_name": {"en": login_name.title(), "ru": login_name},
        "departments": departments,
    }
    answer = await eventually(
        lambda: s.identity.post("/staff", json=body, headers=s.admin),
        lambda r: r.status_code != 422,  # 422 while a new department has not reached identity
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"]), await login(s.identity, login_name, f"{login_name}-password")


async def command(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any = None,
    status: int = 200,
) -> dict[str, Any]:
    answer = await client.request(method, path, json=body, headers=headers)
    assert answer.status_code == status, answer.text
    result: dict[str, Any] = answer.json()
    assert set(result) == {"id", "version", "position"}
    return result


async def new_schedule(s: Stack, **extra: Any) -> dict[str, Any]:
    body = {"name": unique("Office hours "), "timezone": "Europe/Moscow", "weekly": WEEKDAYS}
    return await command(
        s.departments, "POST", "/schedules", s.admin, {**body, **extra}, status=201
    )


async def new_department(s: Stack, **extra: Any) -> dict[str, Any]:
    body = {"name": {"en": unique("Dept "), "ru": "Отдел"}, **extra}
    return await command(s.departments, "POST", "/departments", s.admin, body, status=201)


async def my_rights(s: Stack, session: dict[str, str]) -> list[str]:
    me = await s.identity.get("/me", headers=session)
    assert me.status_code == 200, me.text
    rights: list[str] = me.json()["permissions"]
    return rights


async def rights_become(
    s: Stack, session: dict[str, str], expected: set[str], timeout: float = 30
) -> None:
    """Poll identity's ``GET /me`` until the rights are ``expected``."""
    deadline = time.monotonic() + timeout
    while set(await my_rights(s, session)) != expected:
        assert time.monotonic() < deadline, f"{await my_rights(s, session)} != {sorted(expected)}"
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- defaults


async def test_defaults_are_created_once_even_by_replicas_starting_together(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with fresh_database() as database:
        config = settings(database, kafka_bootstrap, topic_prefix, tmp_path)
        # Two replicas on one event store, started at once. Each has its own
        # read-model database: on a shared PostgreSQL one, the kernel's CREATE
        # TABLEs of two starting replicas collide (reported, shared/readmodel/database.py).
        replicas = [
            config.model_copy(update={"read_model_url": f"sqlite:///{tmp_path}/replica{i}.db"})
            for i in range(2)
        ]
        async with contextlib.AsyncExitStack() as running:
            await asyncio.gather(
                *(
                    running.enter_async_context(serving(create_app(DEPARTMENTS, replica)))
                    for replica in replicas
                )
            )
        store = await open_event_store(database)
        db = await ReadModelDB.open(database)
        try:
            # A restart does not add them again; nor do more racing starts.
            async with (
                serving(create_app(DEPARTMENTS, config)) as base,
                httpx.AsyncClient(base_url=base) as http,
            ):
                head = await store.head_position()
                await eventually(
                    lambda: http.get("/ready"),
                    lambda r: r.json()["projections"]["department_directory"] >= head,
                )
            racing = [Departments(store, db) for _ in range(6)]
            assert await asyncio.gather(*(r.create_defaults() for r in racing)) == [[]] * 6
            for default in (SALES, TECHNICAL_SUPPORT):
                stream = await store.read_stream(f"department-{default.department_id}")
                assert [e.type for e in stream] == [e.event_type for e in default.events()]
            assert await store.count() == DEFAULT_EVENTS
            async with db.engine.connect() as conn:
                rows = (await conn.execute(select(department_rows))).all()
            assert {(r.department_id, r.name_en) for r in rows} == {
                (SALES.department_id, "Sales"),
                (TECHNICAL_SUPPORT.department_id, "Technical support"),
            }
        finally:
            await db.close()
            await store.close()


async def test_defaults_are_listed_from_the_first_start(stack: Stack) -> None:
    # The defaults are appended at start; the read model follows a moment later.
    answer = await eventually(
        lambda: stack.departments.get("/departments", headers=stack.admin),
        lambda found: len([d for d in found.json() if d["id"] in DEFAULT_IDS]) == 2,
    )
    listed = [d for d in answer.json() if d["id"] in DEFAULT_IDS]
    assert sorted(d["name"]["en"] for d in listed) == ["Sales", "Technical support"]
    by_name = {d["name"]["en"]: d for d in listed}
    assert by_name["Technical support"]["support"]["enabled"] is True
    assert by_name["Sales"]["support"]["enabled"] is False
    assert all(d["deleted"] is False for d in listed)
    # Technical support works its own queue from the start; Sales has no rights.
    assert by_name["Sales"]["rights"] == []
    assert by_name["Technical support"]["rights"] == sorted(TECHNICAL_SUPPORT.rights)
    assert by_name["Sales"]["name"]["ru"] == "Продажи"
    only_support = await stack.departments.get(
        "/departments", params={"support_enabled": "true"}, headers=stack.admin
    )
    assert TECHNICAL_SUPPORT.department_id in {d["id"] for d in only_support.json()}
    assert SALES.department_id not in {d["id"] for d in only_support.json()}
    assert int(answer.headers["x-total-count"]) == len(answer.json())
    openapi = (await stack.departments.get("/openapi.json")).json()
    assert {
        "/departments",
        "/departments/{department_id}",
        "/departments/{department_id}/rights",
        "/departments/{department_id}/expected-response",
        "/schedules",
        "/schedules/{schedule_id}",
    } <= set(openapi["paths"])


# ---------------------------------------------------------------- rights reach identity


async def test_department_rights_reach_members_at_identity(stack: Stack) -> None:
    s = stack
    schedule = await new_schedule(s)
    created = await new_department(
        s,
        schedule_id=schedule["id"],
        task_language="ru",
        support={"enabled": True, "sort": 5, "description": "Bills"},
    )
    billing = created["id"]
    shown = await s.departments.get(
        f"/departments/{billing}",
        params={"min_position": created["position"]},
        headers=s.admin,
    )
    assert shown.status_code == 200, shown.text
    assert shown.json()["schedule_id"] == schedule["id"]
    assert shown.json()["task_language"] == "ru"
    assert shown.json()["support"]["sort"] == 5 and shown.json()["rights"] == []

    carol, as_carol = await add_staff(s, unique("carol"), [billing])
    assert await my_rights(s, as_carol) == []

    rights = f"/departments/{billing}/rights"
    await command(s.departments, "POST", rights, s.admin, {"right": "clients", "enabled": True})
    turned = await command(
        s.departments, "POST", rights, s.admin, {"right": "clients.delete", "enabled": False}
    )
    clients_but_delete = catalogue.SECTIONS["clients"].rights - {"clients", "clients.delete"}
    assert "clients.view" in clients_but_delete and len(clients_but_delete) >= 8
    await rights_become(s, as_carol, clients_but_delete)
    shown = await s.departments.get(
        f"/departments/{billing}", params={"min_position": turned["position"]}, headers=s.admin
    )
    assert set(shown.json()["rights"]) == clients_but_delete
    assert shown.json()["enabled"] == ["clients"]
    assert shown.json()["disabled"] == ["clients.delete"]
    assert shown.json()["version"] == turned["version"]

    # A right that comes only from the department cannot be taken from carol alone.
    inherited = await s.identity.delete(f"/staff/{carol}/rights/clients.view", headers=s.admin)
    assert inherited.status_code == 409, inherited.text
    assert inherited.json()["error"]["code"] == "inherited_right"

    # Turning the same right on again changes nothing and writes nothing.
    again = await command(
        s.departments, "POST", rights, s.admin, {"right": "clients.view", "enabled": True}
    )
    assert again["version"] == turned["version"] and again["position"] == 0

    # Off again: the section, and the rights go with it.
    await command(s.departments, "POST", rights, s.admin, {"right": "clients", "enabled": False})
    await command(
        s.departments, "POST", rights, s.admin, {"right": "tickets.view", "enabled": True}
    )
    await rights_become(s, as_carol, {"tickets.view"})

    # Deleting the department takes its rights from its members.
    deleted = await command(s.departments, "DELETE", f"/departments/{billing}", s.admin)
    await rights_become(s, as_carol, set())
    gone = await s.departments.get(
        f"/departments/{billing}", params={"min_position": deleted["position"]}, headers=s.admin
    )
    assert gone.status_code == 404
    kept = await s.departments.get(
        f"/departments/{billing}", params={"include_deleted": "true"}, headers=s.admin
    )
    assert kept.json()["deleted"] is True
    listed = await s.departments.get("/departments", headers=s.admin)
    assert billing not in {d["id"] for d in listed.json()}
    with_deleted = await s.departments.get(
        "/departments", params={"include_deleted": "true"}, headers=s.admin
    )
    assert billing in {d["id"] for d in with_deleted.json()}


async def test_changes_lists_and_concurrency(stack: Stack) -> None:
    s = stack
    schedule = await new_schedule(s, holidays=["2026-12-31"])
    first = await new_department(s, support={"enabled": True, "sort": -900_000})
    second = await new_department(s, support={"enabled": True, "sort": -899_999})
    changed = await command(
        s.departments,
        "PATCH",
        f"/departments/{first['id']}",
        s.admin,
        {"name": {"en": "Aardvark desk", "ru": "Стол"}, "schedule_id": schedule["id"]},
    )
    assert changed["version"] == 2
    patched_support = await command(
        s.departments,
        "PATCH",
        f"/departments/{first['id']}",
        s.admin,
        {"support": {"charge_requests": True}},
    )
    page = await s.departments.get(
        "/departments",
        params={"min_position": patched_support["position"], "limit": 2},
        headers=s.admin,
    )
    assert [d["id"] for d in page.json()] == [first["id"], second["id"]]
    top = page.json()[0]
    assert top["name"] == {"en": "Aardvark desk", "ru": "Стол"}
    assert top["schedule_id"] == schedule["id"]
    assert top["support"]["charge_requests"] is True and top["support"]["sort"] == -900_000
    assert int(page.headers["x-total-count"]) >= 4
    second_page = await s.departments.get(
        "/departments", params={"limit": 1, "offset": 1}, headers=s.admin
    )
    assert [d["id"] for d in second_page.json()] == [second["id"]]

    # A client that read version 2 and writes after someone else's change: 409.
    stale = await s.departments.patch(
        f"/departments/{first['id']}",
        params={"expected_version": 2},
        json={"task_language": "ru"},
        headers=s.admin,
    )
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "version_conflict"
    fresh = await s.departments.patch(
        f"/departments/{first['id']}",
        params={"expected_version": 3},
        json={"task_language": "ru"},
        headers=s.admin,
    )
    assert fresh.status_code == 200 and fresh.json()["version"] == 4
    # Detaching the schedule.
    detached = await command(
        s.departments, "PATCH", f"/departments/{first['id']}", s.admin, {"schedule_id": None}
    )
    shown = await s.departments.get(
        f"/departments/{first['id']}",
        params={"min_position": detached["position"]},
        headers=s.admin,
    )
    assert shown.json()["schedule_id"] is None and shown.json()["task_language"] == "ru"

    # Schedules: list, one, change.
    renamed = await command(
        s.departments,
        "PATCH",
        f"/schedules/{schedule['id']}",
        s.admin,
        {"name": "Aaa hours", "timezone": "Asia/Tokyo", "weekly": {"sat": [["10:00", "24:00"]]}},
    )
    one = await s.departments.get(
        f"/schedules/{schedule['id']}",
        params={"min_position": renamed["position"]},
        headers=s.admin,
    )
    assert one.status_code == 200
    assert one.json() | {"weekly": None} == {
        "id": schedule["id"],
        "name": "Aaa hours",
        "timezone": "Asia/Tokyo",
        "weekly": None,
        "holidays": ["2026-12-31"],
        "version": 2,
    }
    assert one.json()["weekly"]["sat"] == [["10:00", "24:00"]]
    assert one.json()["weekly"]["mon"] == []
    listed = await s.departments.get("/schedules", headers=s.admin)
    assert schedule["id"] in {x["id"] for x in listed.json()}
    assert int(listed.headers["x-total-count"]) == len(listed.json())


async def test_expected_response_follows_the_schedule(stack: Stack) -> None:
    s = stack
    schedule = await new_schedule(s, holidays=["2026-01-01"])  # Moscow, 09-18 on weekdays
    department = await new_department(s, schedule_id=schedule["id"])
    path = f"/departments/{department['id']}/expected-response"
    # Friday 2026-03-06, 16:00 Moscow (13:00 UTC) + 4 business hours: 2 on Friday, 2 on Monday.
    due = await s.departments.get(
        path,
        params={
            "hours": 4,
            "requested_at": "2026-03-06T16:00:00+03:00",
            "min_position": department["position"],
        },
        headers=s.admin,
    )
    assert due.status_code == 200, due.text
    body = due.json()
    assert body["schedule_id"] == schedule["id"] and body["timezone"] == "Europe/Moscow"
    assert datetime.fromisoformat(body["expected_at"]) == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    # The holiday is skipped: 2025-12-31 (Wed) 17:00 + 2h -> Friday 2026-01-02 10:00 Moscow.
    over_holiday = await s.departments.get(
        path,
        params={"hours": 2, "requested_at": "2025-12-31T17:00:00+03:00"},
        headers=s.admin,
    )
    assert datetime.fromisoformat(over_holiday.json()["expected_at"]) == datetime(
        2026, 1, 2, 7, 0, tzinfo=UTC
    )
    # Without requested_at: a request made now, due in the future, within business hours.
    now = await s.departments.get(path, params={"hours": 1}, headers=s.admin)
    assert now.status_code == 200, now.text
    expected_at = datetime.fromisoformat(now.json()["expected_at"])
    assert expected_at > datetime.now(UTC)
    assert expected_at.astimezone(UTC).weekday() < 5


# ---------------------------------------------------------------- permissions


async def test_every_endpoint_checks_its_right(stack: Stack) -> None:
    s = stack
    schedule = await new_schedule(s)
    target = await new_department(s, schedule_id=schedule["id"])
    doomed = await new_department(s)
    dept, sched = f"/departments/{target['id']}", f"/schedules/{schedule['id']}"
    bob, as_bob = await add_staff(s, unique("bob"), [])
    # Departments learns bob from identity.events: until then he is unknown (401).
    await eventually(
        lambda: s.departments.get("/departments", headers=as_bob), lambda r: r.status_code == 403
    )
    calls: list[tuple[str, str, Any, str]] = [
        ("GET", "/departments", None, "departments.view"),
        ("GET", dept, None, "departments.view"),
        ("GET", f"{dept}/expected-response?hours=2", None, "departments.view"),
        ("GET", "/schedules", None, "departments.view"),
        ("GET", sched, None, "departments.view"),
        ("POST", "/departments", {"name": {"en": unique("By bob ")}}, "departments.create"),
        ("PATCH", dept, {"task_language": "ru"}, "departments.edit"),
        ("DELETE", f"/departments/{doomed['id']}", None, "departments.delete"),
        # (held by full-access staff only: never granted to bob, see below)
        (
            "POST",
            f"{dept}/rights",
            {"right": "departments.view", "enabled": True},
            "departments.rights",
        ),
        (
            "POST",
            "/schedules",
            {"name": "By bob", "timezone": "UTC", "weekly": WEEKDAYS},
            "departments.schedules",
        ),
        ("PATCH", sched, {"name": "Renamed by bob"}, "departments.schedules"),
    ]
    for method, path, body, right in calls:
        anonymous = await s.departments.request(method, path, json=body)
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert anonymous.json()["error"]["code"] == "unauthorized"
        forged = await s.departments.request(
            method, path, json=body, headers={"Authorization": "Bearer not.a.token"}
        )
        assert forged.status_code == 401, path
        refused = await s.departments.request(method, path, json=body, headers=as_bob)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["code"] == "forbidden"
        assert right in refused.json()["error"]["message"]
    nothing_written = await s.departments.get(
        f"/departments/{doomed['id']}", params={"min_position": doomed["position"]}, headers=s.admin
    )
    assert nothing_written.status_code == 200

    def as_bob_call(method: str, path: str, body: Any) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: s.departments.request(method, path, json=body, headers=as_bob)

    by_right: dict[str, list[tuple[str, str, Any]]] = {}
    for method, path, body, right in calls:
        by_right.setdefault(right, []).append((method, path, body))
    for right, calls_of_right in by_right.items():
        granted = await s.identity.post(
            f"/staff/{bob}/rights", json={"right": right}, headers=s.admin
        )
        if right == "departments.rights":
            # A function that manages rights: full access is the only way to hold it.
            assert granted.status_code == 403, granted.text
            assert granted.json()["error"]["code"] == "full_access_only"
            for method, path, body in calls_of_right:
                still = await s.departments.request(method, path, json=body, headers=as_bob)
                assert still.status_code == 403, (path, still.text)
            continue
        assert granted.status_code == 201, granted.text
        for method, path, body in calls_of_right:
            allowed = await eventually(
                as_bob_call(method, path, body),
                lambda r: r.status_code != 403,
            )
            assert allowed.status_code in (200, 201), (right, path, allowed.text)
        revoked = await s.identity.delete(f"/staff/{bob}/rights/{right}", headers=s.admin)
        assert revoked.status_code == 200, revoked.text
        for method, path, body in calls_of_right:
            await eventually(
                as_bob_call(method, path, body),
                lambda r: r.status_code == 403,
            )
    # Bob's writes were recorded as his.
    async with db_of(s) as db, db.engine.connect() as conn:
        row = (
            await conn.execute(
                select(department_rows.c.deleted).where(
                    department_rows.c.department_id == doomed["id"]
                )
            )
        ).first()
    assert row is not None and row.deleted is True
    store = await open_event_store(s.departments_db)
    try:
        deletion = await store.read_stream(f"department-{doomed['id']}")
        assert deletion[-1].actor.id == bob
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def db_of(s: Stack) -> AsyncIterator[ReadModelDB]:
    db = await ReadModelDB.open(s.departments_db)
    try:
        yield db
    finally:
        await db.close()


# ---------------------------------------------------------------- bad input


async def test_bad_input_is_a_4xx_naming_the_field_and_writes_nothing(stack: Stack) -> None:
    s = stack
    http, admin = s.departments, s.admin
    schedule = await new_schedule(s)
    department = await new_department(s, schedule_id=schedule["id"])
    bare = await new_department(s)  # no schedule
    dept = f"/departments/{department['id']}"
    unknown_dept = f"/departments/{uuid.uuid4()}"
    unknown_sched = f"/schedules/{uuid.uuid4()}"
    await s.departments.get("/schedules", params={"min_position": bare["position"]}, headers=admin)
    store = await open_event_store(s.departments_db)
    head = await store.head_position()
    before = {
        path: (await http.get(path, params={"include_deleted": "true"}, headers=admin)).json()
        for path in ("/departments", "/schedules", dept)
    }

    async def refused(
        method: str, path: str, field: str | None, status: int = 422, **kw: Any
    ) -> None:
        headers = kw.pop("headers", admin)
        answer = await http.request(method, path, headers=headers, **kw)
        assert answer.status_code == status, (method, path, kw, answer.text)
        error = answer.json()["error"]
        assert {"code", "message"} <= set(error)
        if field is not None:
            assert field in error["message"] or field in str(error.get("fields")), error

    def malformed(method: str, path: str) -> Awaitable[None]:
        return refused(
            method,
            path,
            None,
            content=b'{"name": ',
            headers={**admin, "content-type": "application/json"},
        )

    good = {"name": {"en": "Valid", "ru": ""}, "schedule_id": schedule["id"]}
    create = "/departments"
    await refused("POST", create, "body.name", json={"schedule_id": schedule["id"]})
    await refused("POST", create, "body.name", json={**good, "name": "Sales"})
    await refused("POST", create, "name.en", json={**good, "name": {"en": "  ", "ru": "x"}})
    await refused("POST", create, "name.en", json={**good, "name": {"en": "x" * 101}})
    await refused("POST", create, "body.name.de", json={**good, "name": {"en": "a", "de": "b"}})
    await refused("POST", create, "schedule_id", json={**good, "schedule_id": str(uuid.uuid4())})
    await refused("POST", create, "body.schedule_id", json={**good, "schedule_id": 7})
    await refused("POST", create, "task_language", json={**good, "task_language": "xx"})
    await refused(
        "POST", create, "body.support.enabled", json={**good, "support": {"enabled": "maybe"}}
    )
    await refused("POST", create, "body.support.sort", json={**good, "support": {"sort": "top"}})
    await refused("POST", create, "support.sort", json={**good, "support": {"sort": 10**9}})
    await refused(
        "POST", create, "support.providers.0", json={**good, "support": {"providers": [""]}}
    )
    await refused("POST", create, "body.support.unknown", json={**good, "support": {"unknown": 1}})
    await refused("POST", create, "body.surprise", json={**good, "surprise": 1})
    await refused("POST", create, "body", json=["not", "an", "object"])
    await refused(
        "POST", create, "body", content=b"", headers={**admin, "content-type": "application/json"}
    )
    await malformed("POST", create)

    await refused("PATCH", dept, "name", json={"name": None})
    await refused("PATCH", dept, "task_language", json={"task_language": None})
    await refused("PATCH", dept, "support", json={"support": None})
    await refused("PATCH", dept, "support.enabled", json={"support": {"enabled": None}})
    await refused("PATCH", dept, "body.support.sort", json={"support": {"sort": "high"}})
    await refused("PATCH", dept, "schedule_id", json={"schedule_id": "no-such-schedule"})
    await refused("PATCH", dept, "body.color", json={"color": "red"})
    await refused("PATCH", dept, "expected_version", params={"expected_version": -1}, json={})
    await refused("PATCH", dept, "expected_version", params={"expected_version": "x"}, json={})
    await refused("PATCH", unknown_dept, None, status=404, json={"task_language": "ru"})
    await malformed("PATCH", dept)

    rights = f"{dept}/rights"
    await refused("POST", rights, "right", json={"right": "no.such.right", "enabled": True})
    await refused("POST", rights, "right", json={"right": "clients.fly", "enabled": True})
    await refused("POST", rights, "body.right", json={"right": "", "enabled": True})
    await refused("POST", rights, "body.enabled", json={"right": "clients"})
    await refused("POST", rights, "body.enabled", json={"right": "clients", "enabled": "sure"})
    await refused("POST", rights, "body.right", json={"right": ["clients"], "enabled": True})
    await refused(
        "POST", f"{unknown_dept}/rights", None, 404, json={"right": "clients", "enabled": True}
    )
    await malformed("POST", rights)

    await refused("DELETE", unknown_dept, None, status=404)
    await refused("DELETE", dept, "expected_version", params={"expected_version": "soon"})

    good_schedule = {"name": "Valid", "timezone": "Europe/Moscow", "weekly": WEEKDAYS}
    await refused("POST", "/schedules", "body.name", json={"timezone": "UTC", "weekly": WEEKDAYS})
    await refused("POST", "/schedules", "body.weekly", json={"name": "x", "timezone": "UTC"})
    for timezone in ("Mars/Olympus_Mons", "../../etc/passwd", "Europe/", "localtime"):
        await refused(
            "POST", "/schedules", "timezone", json={**good_schedule, "timezone": timezone}
        )
    await refused("POST", "/schedules", "body.timezone", json={**good_schedule, "timezone": 3})
    await refused("POST", "/schedules", "body.weekly", json={**good_schedule, "weekly": "9-18"})
    await refused(
        "POST",
        "/schedules",
        "weekly.funday",
        json={**good_schedule, "weekly": {"funday": [["09:00", "18:00"]]}},
    )
    await refused(
        "POST",
        "/schedules",
        "weekly.mon.0",
        json={**good_schedule, "weekly": {"mon": [["25:00", "26:00"]]}},
    )
    await refused(
        "POST",
        "/schedules",
        "weekly.mon.0",
        json={**good_schedule, "weekly": {"mon": [["18:00", "09:00"]]}},
    )
    await refused(
        "POST", "/schedules", "weekly.mon.0", json={**good_schedule, "weekly": {"mon": [["09:00"]]}}
    )
    await refused(
        "POST",
        "/schedules",
        "weekly.mon",
        json={**good_schedule, "weekly": {"mon": [["09:00", "13:00"], ["12:00", "18:00"]]}},
    )
    await refused(
        "POST",
        "/schedules",
        "body.weekly.mon.0.0",
        json={**good_schedule, "weekly": {"mon": [[9, 18]]}},
    )
    await refused("POST", "/schedules", "weekly", json={**good_schedule, "weekly": {}})
    await refused(
        "POST", "/schedules", "holidays.0", json={**good_schedule, "holidays": ["2026-13-40"]}
    )
    await refused(
        "POST", "/schedules", "holidays.0", json={**good_schedule, "holidays": ["tomorrow"]}
    )
    await refused(
        "POST", "/schedules", "body.holidays", json={**good_schedule, "holidays": "2026-12-31"}
    )
    await refused("POST", "/schedules", "body.extra", json={**good_schedule, "extra": True})
    await malformed("POST", "/schedules")

    sched = f"/schedules/{schedule['id']}"
    await refused("PATCH", sched, "timezone", json={"timezone": "Nowhere/City"})
    await refused("PATCH", sched, "weekly", json={"weekly": None})
    await refused("PATCH", sched, "name", json={"name": "   "})
    await refused("PATCH", sched, "weekly.mon.0", json={"weekly": {"mon": [["9", "18"]]}})
    await refused("PATCH", sched, "body.owner", json={"owner": "me"})
    await refused("PATCH", unknown_sched, None, status=404, json={"name": "x"})
    await malformed("PATCH", sched)

    await refused("GET", "/departments", "limit", params={"limit": 0})
    await refused("GET", "/departments", "limit", params={"limit": "many"})
    await refused("GET", "/departments", "offset", params={"offset": -1})
    await refused("GET", "/departments", "support_enabled", params={"support_enabled": "perhaps"})
    await refused("GET", "/departments", "min_position", params={"min_position": -1})
    await refused("GET", "/schedules", "limit", params={"limit": 501})
    await refused("GET", unknown_dept, None, status=404)
    await refused("GET", unknown_sched, None, status=404)
    expected = f"{dept}/expected-response"
    await refused("GET", expected, "hours")
    await refused("GET", expected, "hours", params={"hours": -1})
    await refused("GET", expected, "hours", params={"hours": "soon"})
    await refused("GET", expected, "hours", params={"hours": "nan"})
    await refused("GET", expected, "hours", params={"hours": 10**6})
    await refused("GET", expected, "requested_at", params={"hours": 1, "requested_at": "friday"})
    await refused(
        "GET", expected, "requested_at", params={"hours": 1, "requested_at": "2026-03-06T16:00:00"}
    )
    await refused(
        "GET", f"/departments/{bare['id']}/expected-response", "schedule_id", params={"hours": 1}
    )
    await refused("GET", f"{unknown_dept}/expected-response", None, 404, params={"hours": 1})

    # Nothing was half-written: the store has not moved, the read models show the same.
    try:
        assert await store.head_position() == head
    finally:
        await store.close()
    for path, seen in before.items():
        now = await http.get(path, params={"include_deleted": "true"}, headers=admin)
        assert now.json() == seen, path


# ---------------------------------------------------------------- replay


async def test_the_read_model_rebuilds_to_the_same_rows(stack: Stack, tmp_path: Path) -> None:
    """``python -m shared.cli rebuild departments`` replays the log into equal rows."""
    await new_schedule(stack)  # whatever ran before, the log holds a schedule
    rebuilt = f"sqlite:///{tmp_path}/rebuilt.db"
    env = {
        **os.environ,
        "EVENT_STORE_URL": stack.departments_db,
        "READ_MODEL_URL": rebuilt,
        "VAR_DIR": str(tmp_path),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.cli",
        "rebuild",
        "departments",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert b"rebuilt department_directory" in output

    async def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
        db = await ReadModelDB.open(url)
        try:
            async with db.engine.connect() as conn:
                return {
                    table.name: sorted(tuple(r) for r in await conn.execute(select(table)))
                    for table in (department_rows, schedule_rows)
                }
        finally:
            await db.close()

    store = await open_event_store(stack.departments_db)
    head = await store.head_position()
    await store.close()
    # The live read model first reaches the same head.
    await stack.departments.get("/schedules", params={"min_position": head}, headers=stack.admin)
    live = await rows(stack.departments_db)
    assert live["departments"] and live["schedules"]
    assert await rows(rebuilt) == live
