"""The support catalogue over real HTTP: a tickets app with only the catalogue, on PostgreSQL.

The app runs the kernel for real (store, read models, relay to the broker,
access consumer); staff and client access is seeded straight into its access
copy and tokens are issued with the shared secret, as identity would. The
``CatalogPort`` side (what the ticket core calls) is exercised on the
``SupportCatalog`` the app built, and on extra ones over their own store
connections, as other replicas would be. One app is shared by the module;
every test makes its own categories, templates, announcements and clients.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from services.tickets.api.catalog import router
from services.tickets.app.catalog import SupportCatalog
from services.tickets.app.ports import CatalogPort, CategoryInfo
from services.tickets.domain.catalog import CategoryDraft, CategoryPatch
from services.tickets.projections.catalog import (
    CatalogDirectory,
    announcement_marks,
    catalog_projections,
)
from shared.access.control import ClientAccessChanged, IpPolicy, StaffAccessChanged, issue_token
from shared.domain.aggregate import DomainError, NotFound, PaymentRequired
from shared.domain.events import Actor, RecordedEvent
from shared.eventstore import ConcurrencyError, EventStore, open_event_store
from shared.projections.runner import ProjectionRunner
from shared.readmodel.database import ReadModelDB
from shared.runtime.service import ServiceRuntime, ServiceSpec, create_app
from shared.runtime.settings import ServiceSettings
from tests.conftest import fresh_database
from tests.http_util import serving
from tests.support.keys import identity_key

Headers = dict[str, str]
STAFF = Actor(id="s-admin", kind="staff")
RIGHTS = {
    "categories": "tickets.categories",
    "templates": "tickets.templates",
    "announcements": "tickets.announcements",
    "settings": "tickets.settings",
    "payments": "finance.payments",
    "view": "tickets.view",
    "reply": "tickets.reply",
}


@dataclass
class Stack:
    http: httpx.AsyncClient
    app: FastAPI
    url: str
    admin: Headers
    by_right: dict[str, Headers]  # staff with exactly that one right
    nobody: Headers  # staff without rights
    client: Headers  # the client "cl-main"
    last: int = 0  # the position of the latest write the tests made

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    @property
    def store(self) -> EventStore:
        assert self.runtime.store is not None
        return self.runtime.store

    @property
    def catalog(self) -> SupportCatalog:
        catalog: SupportCatalog = self.runtime.composed.support_catalog
        return catalog


def staff(staff_id: str, rights: list[str], full_access: bool = False) -> StaffAccessChanged:
    return StaffAccessChanged(
        staff_id=staff_id,
        login=staff_id,
        disabled=False,
        full_access=full_access,
        rights=rights,
        departments=[],
        ip_policy=IpPolicy(),
        bind_session_to_ip=False,
    )


def bearer(principal_id: str, kind: str = "staff") -> Headers:
    token = issue_token(
        identity_key(),
        principal_id=principal_id,
        kind="client" if kind == "client" else "staff",
        session_id=str(uuid.uuid4()),
        lifetime=timedelta(hours=1),
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with fresh_database() as url:

        async def compose(runtime: ServiceRuntime) -> SimpleNamespace:
            """As the tickets service builds it (its catalogue only)."""
            assert runtime.store is not None and runtime.db is not None
            catalog = SupportCatalog(runtime.store, runtime.db)
            await catalog.start()
            return SimpleNamespace(support_catalog=catalog)

        spec = ServiceSpec(
            name="tickets", routers=[router], projections=catalog_projections, compose=compose
        )
        settings = ServiceSettings(
            event_store_url=url,
            read_model_url=url,
            kafka_bootstrap_servers=kafka_bootstrap,
            topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
            var_dir=str(tmp_path_factory.mktemp("var")),
        )
        app = create_app(spec, settings)
        async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
            app.state.runtime.access.apply_all(
                [
                    staff("s-admin", [], full_access=True),
                    staff("s-nobody", []),
                    *(staff(f"s-{name}", [right]) for name, right in RIGHTS.items()),
                    ClientAccessChanged(client_id="cl-main", disabled=False),
                    ClientAccessChanged(client_id="cl-other", disabled=False),
                ]
            )
            yield Stack(
                http=http,
                app=app,
                url=url,
                admin=bearer("s-admin"),
                by_right={name: bearer(f"s-{name}") for name in RIGHTS},
                nobody=bearer("s-nobody"),
                client=bearer("cl-main", "client"),
            )


async def command(
    s: Stack,
    method: str,
    path: str,
    body: Any = None,
    status: int = 200,
    headers: Headers | None = None,
    **params: Any,
) -> dict[str, Any]:
    answer = await s.http.request(
        method, path, json=body, headers=headers or s.admin, params=params
    )
    assert answer.status_code == status, (method, path, answer.text)
    result: dict[str, Any] = answer.json()
    assert set(result) == {"id", "version", "position"}
    s.last = max(s.last, result["position"])
    return result


async def read(s: Stack, path: str, headers: Headers | None = None, **params: Any) -> Any:
    """A read after every write the tests made so far (``min_position``)."""
    answer = await s.http.get(
        path, params={"min_position": s.last, **params}, headers=headers or s.admin
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def new_category(s: Stack, **fields: Any) -> str:
    body = {"topic": {"en": "Billing", "ru": "Оплата"}, "department_id": "d-1", **fields}
    return str((await command(s, "POST", "/categories", body, 201))["id"])


async def new_template(s: Stack, **fields: Any) -> str:
    body = {"name": "Greeting", "subject": "Re: %ticket_subject%", "body": "Hi", **fields}
    return str((await command(s, "POST", "/templates", body, 201))["id"])


async def new_announcement(s: Stack, **fields: Any) -> dict[str, Any]:
    body = {"text": "Maintenance", "ends_at": later(hours=1), **fields}
    return await command(s, "POST", "/announcements", body, 201)


def new_client() -> str:
    return f"cl-{uuid.uuid4().hex[:10]}"


async def log_after(s: Stack, mark: int, position: int) -> list[RecordedEvent]:
    """The log after ``mark``, once it shows ``position`` (PostgreSQL's horizon may lag)."""
    while True:
        events = await s.store.read_all(mark, 1_000_000)
        if events and events[-1].position >= position:
            return events
        await asyncio.sleep(0.01)


async def nothing_written_since(s: Stack, mark: int) -> None:
    """Only a fence written after ``mark`` is in the log after it."""
    fence = await new_template(s, name="Fence")
    events = await log_after(s, mark, s.last)
    assert [e.stream for e in events] == [f"ticket-template-{fence}"], events


# ---------------------------------------------------------------- rights


async def test_every_endpoint_needs_its_right(stack: Stack) -> None:
    s = stack
    category = await new_category(s)
    template = await new_template(s)
    announcement = (await new_announcement(s))["id"]
    doomed_category = await new_category(s)
    doomed_template = await new_template(s)
    client = new_client()
    cat, tpl, ann = "categories", "templates", "announcements"
    # (method, path, body, who may: a right's short name, "anyone", "templates|reply", "paid")
    calls: list[tuple[str, str, Any, str]] = [
        ("GET", "/categories", None, "anyone"),
        ("GET", f"/categories/{category}", None, "anyone"),
        ("POST", "/categories", {"topic": "T", "department_id": "d-1"}, cat),
        ("PATCH", f"/categories/{category}", {"sort": 7}, cat),
        ("DELETE", f"/categories/{doomed_category}", None, cat),
        ("GET", "/templates", None, "templates|reply"),
        ("GET", f"/templates/{template}", None, "templates|reply"),
        ("POST", "/templates", {"name": "N", "body": "B"}, tpl),
        ("PATCH", f"/templates/{template}", {"name": "Renamed"}, tpl),
        ("DELETE", f"/templates/{doomed_template}", None, tpl),
        ("GET", "/announcements", None, "anyone"),
        ("GET", f"/announcements/{announcement}", None, "anyone"),
        ("POST", "/announcements", {"text": "x", "ends_at": later(hours=1)}, ann),
        ("DELETE", f"/announcements/{announcement}", None, ann),
        ("GET", "/support/settings", None, "anyone"),
        ("PUT", "/support/settings", {"transfer_notices_shown": 3}, "settings"),
        ("POST", f"/clients/{client}/paid-requests", {"amount": 1}, "payments"),
        ("GET", f"/clients/{client}/paid-requests", None, "view|payments"),
    ]
    mark = s.last
    for method, path, body, who in calls:
        anonymous = await s.http.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        if who == "anyone":
            continue
        allowed_rights = who.split("|")
        refused = [s.nobody, s.client] + [
            headers for name, headers in s.by_right.items() if name not in allowed_rights
        ]
        for headers in refused:
            answer = await s.http.request(method, path, json=body, headers=headers)
            # A client reading another client's balance learns nothing: 404.
            expected = 404 if headers is s.client and who == "view|payments" else 403
            assert answer.status_code == expected, (method, path, headers, answer.text)
            if expected == 403:
                assert answer.json()["error"]["code"] == "forbidden"
                assert RIGHTS[allowed_rights[0]] in answer.json()["error"]["message"]
    await nothing_written_since(s, mark)
    for method, path, body, who in calls:
        if who == "anyone":
            allowed = [s.nobody, s.client, s.by_right["view"]]
        else:
            allowed = [s.by_right[name] for name in who.split("|")]
        for headers in allowed:
            answer = await s.http.request(method, path, json=body, headers=headers)
            assert answer.status_code in (200, 201), (method, path, answer.text)
    # The changes were recorded as the staff member's who made them.
    events = await s.store.read_stream(f"ticket-category-{doomed_category}")
    assert events[-1].type == "TicketCategoryDeleted"
    assert events[-1].actor.id == "s-categories"
    paid = await s.store.read_stream(f"paid-requests-{client}")
    assert [e.actor.id for e in paid] == ["s-payments"]
    # The API documents itself.
    openapi = (await s.http.get("/openapi.json")).json()
    assert {"/categories", "/templates/{template_id}", "/support/settings"} <= set(openapi["paths"])
    assert "/clients/{client_id}/paid-requests" in openapi["paths"]


# ---------------------------------------------------------------- bad input


async def test_bad_input_is_a_422_naming_the_field_and_writes_nothing(stack: Stack) -> None:
    s = stack
    category = await new_category(s)
    template = await new_template(s)
    announcement = (await new_announcement(s))["id"]
    mark = s.last

    async def refused(
        method: str, path: str, field: str | None, status: int = 422, **kw: Any
    ) -> dict[str, Any]:
        headers = kw.pop("headers", s.admin)
        answer = await s.http.request(method, path, headers=headers, **kw)
        assert answer.status_code == status, (method, path, kw, answer.text)
        error: dict[str, Any] = answer.json()["error"]
        if field is not None:
            assert error.get("field") == field or field in str(error.get("fields")), error
            assert field in error["message"], error
        return error

    async def malformed(method: str, path: str) -> None:
        error = await refused(
            method,
            path,
            None,
            content=b'{"name": ',
            headers={**s.admin, "content-type": "application/json"},
        )
        assert error["code"] == "invalid_input"

    topic = {"topic": "T"}
    dept = {"department_id": "d-1"}
    await refused("POST", "/categories", "body.topic", json=dept)
    await refused("POST", "/categories", "body.department_id", json=topic)
    await refused("POST", "/categories", "topic.en", json={**dept, "topic": "  "})
    await refused("POST", "/categories", "topic.en", json={**dept, "topic": {"ru": "Т"}})
    await refused("POST", "/categories", "topic", json={**dept, "topic": {"en": "T", "ru": 5}})
    await refused("POST", "/categories", "department_id", json={**topic, "department_id": ""})
    await refused("POST", "/categories", "department_id", json={**topic, "department_id": "d" * 65})
    await refused("POST", "/categories", "project_id", json={**topic, **dept, "project_id": " "})
    await refused("POST", "/categories", "body.paid", json={**topic, **dept, "paid": "yes"})
    await refused("POST", "/categories", "body.sort", json={**topic, **dept, "sort": "1"})
    await refused("POST", "/categories", "sort", json={**topic, **dept, "sort": 10**9})
    await refused("POST", "/categories", "warning", json={**topic, **dept, "warning": "w" * 2001})
    await refused("POST", "/categories", "body.color", json={**topic, **dept, "color": "red"})
    await refused("POST", "/categories", "body", json=["a", "list"])
    await malformed("POST", "/categories")
    one_category = f"/categories/{category}"
    await refused("PATCH", one_category, "topic", json={"topic": None})
    await refused("PATCH", one_category, "paid", json={"paid": None})
    await refused("PATCH", one_category, "department_id", json={"department_id": " x"})
    await refused("PATCH", one_category, "expected_version", params={"expected_version": -1})
    await malformed("PATCH", one_category)
    await refused("GET", "/categories", "limit", params={"limit": 0})
    await refused("GET", "/categories", "offset", params={"offset": -1})
    await refused("GET", "/categories", "min_position", params={"min_position": -1})
    await refused("GET", "/categories", "paid", params={"paid": "maybe"})

    await refused("POST", "/templates", "body.name", json={"body": "B"})
    await refused("POST", "/templates", "body.body", json={"name": "N"})
    await refused("POST", "/templates", "name", json={"name": " ", "body": "B"})
    await refused("POST", "/templates", "body", json={"name": "N", "body": "\n "})
    await refused("POST", "/templates", "subject", json={"name": "N", "body": "B", "subject": 7})
    await refused(
        "POST", "/templates", "subject", json={"name": "N", "body": "B", "subject": "s" * 301}
    )
    await malformed("POST", "/templates")
    await refused("PATCH", f"/templates/{template}", "body", json={"body": None})
    await malformed("PATCH", f"/templates/{template}")

    ends = later(hours=1)
    await refused("POST", "/announcements", "body.text", json={"ends_at": ends})
    await refused("POST", "/announcements", "body.ends_at", json={"text": "x"})
    await refused("POST", "/announcements", "text", json={"text": " ", "ends_at": ends})
    await refused("POST", "/announcements", "text.en", json={"text": {"ru": "Р"}, "ends_at": ends})
    await refused("POST", "/announcements", "ends_at", json={"text": "x", "ends_at": "soon"})
    naive = datetime.now() + timedelta(hours=1)
    await refused(
        "POST", "/announcements", "ends_at", json={"text": "x", "ends_at": naive.isoformat()}
    )
    await refused(
        "POST",
        "/announcements",
        "starts_at",
        json={"text": "x", "starts_at": naive.isoformat(), "ends_at": ends},
    )
    await refused(
        "POST",
        "/announcements",
        "ends_at",
        json={"text": "x", "starts_at": later(hours=2), "ends_at": later(hours=1)},
    )
    await refused(
        "POST", "/announcements", "ends_at", json={"text": "x", "ends_at": later(hours=-1)}
    )
    await refused(
        "POST",
        "/announcements",
        "body.blocking",
        json={"text": "x", "ends_at": ends, "blocking": 1},
    )
    await malformed("POST", "/announcements")
    await refused("GET", "/announcements", "active", params={"active": "perhaps"})

    settings = "/support/settings"
    await refused("PUT", settings, "transfer_notices_shown", json={"transfer_notices_shown": 101})
    await refused("PUT", settings, "transfer_notices_shown", json={"transfer_notices_shown": -1})
    await refused("PUT", settings, "transfer_notices_shown", json={"transfer_notices_shown": None})
    await refused("PUT", settings, "transfer_notices_shown", json={"transfer_notices_shown": 2.5})
    await refused("PUT", settings, "close_after_days", json={"close_after_days": 0})
    await refused("PUT", settings, "close_after_days", json={"close_after_days": 366})
    await refused("PUT", settings, "rate_after_days", json={"rate_after_days": -1})
    await refused("PUT", settings, "rating_mode", json={"rating_mode": "stars"})
    await refused("PUT", settings, "body.colour", json={"colour": "red"})
    await malformed("PUT", settings)

    paid = f"/clients/{new_client()}/paid-requests"
    await refused("POST", paid, "body.amount", json={})
    await refused("POST", paid, "amount", json={"amount": 0})
    await refused("POST", paid, "amount", json={"amount": -3})
    await refused("POST", paid, "amount", json={"amount": 100_001})
    await refused("POST", paid, "body.amount", json={"amount": "5"})
    await refused("POST", paid, "body.amount", json={"amount": True})
    await refused("POST", paid, "comment", json={"amount": 1, "comment": "c" * 501})
    await refused("POST", f"/clients/{'x' * 65}/paid-requests", "client_id", json={"amount": 1})
    await refused("GET", f"/clients/{'x' * 65}/paid-requests", "client_id")
    await malformed("POST", paid)

    missing = str(uuid.uuid4())
    await refused("GET", f"/categories/{missing}", None, 404)
    await refused("PATCH", f"/categories/{missing}", None, 404, json={"sort": 1})
    await refused("DELETE", f"/categories/{missing}", None, 404)
    await refused("GET", f"/templates/{missing}", None, 404)
    await refused("PATCH", f"/templates/{missing}", None, 404, json={"name": "x"})
    await refused("DELETE", f"/templates/{missing}", None, 404)
    await refused("GET", f"/announcements/{missing}", None, 404)
    await refused("DELETE", f"/announcements/{missing}", None, 404)
    error = await refused(
        "PATCH", one_category, None, 409, params={"expected_version": 7}, json={"sort": 3}
    )
    assert error["code"] == "version_conflict"
    error = await refused(
        "DELETE", f"/announcements/{announcement}", None, 409, params={"expected_version": 2}
    )
    assert error["code"] == "version_conflict"

    await nothing_written_since(s, mark)


# ---------------------------------------------------------------- categories


async def test_categories_are_created_listed_changed_and_deleted(stack: Stack) -> None:
    s = stack
    dept = f"d-{uuid.uuid4().hex[:8]}"
    billing = await new_category(s, department_id=dept, sort=2)
    vip = await new_category(
        s,
        department_id=dept,
        topic="VIP support",
        project_id="p-vip",
        paid=True,
        warning="One paid request is taken.",
        sort=1,
    )
    other = await new_category(s, department_id=dept, project_id="p-other", sort=3)
    found = await read(s, "/categories", department_id=dept)
    assert [c["id"] for c in found] == [vip, billing, other]
    assert found[0] == {
        "id": vip,
        "topic": {"en": "VIP support", "ru": ""},
        "department_id": dept,
        "project_id": "p-vip",
        "paid": True,
        "warning": "One paid request is taken.",
        "sort": 1,
        "version": 1,
    }
    # A project sees its own categories and those for every project; clients may read.
    shown = await read(s, "/categories", headers=s.client, department_id=dept, project_id="p-vip")
    assert [c["id"] for c in shown] == [vip, billing]
    assert [c["id"] for c in await read(s, "/categories", department_id=dept, paid=True)] == [vip]
    page = await s.http.get(
        "/categories",
        params={"department_id": dept, "limit": 1, "offset": 1, "min_position": s.last},
        headers=s.client,
    )
    assert page.headers["x-total-count"] == "3"
    assert [c["id"] for c in page.json()] == [billing]
    assert (await read(s, f"/categories/{vip}", headers=s.client))["paid"] is True

    # What the ticket core gets, at once after the command (from the store).
    port: CatalogPort = s.catalog
    assert await port.category(vip) == CategoryInfo(
        category_id=vip,
        department_id=dept,
        project_id="p-vip",
        paid=True,
        warning="One paid request is taken.",
        topic="VIP support",
    )
    changed = await command(
        s, "PATCH", f"/categories/{vip}", {"project_id": None, "paid": False, "sort": 1}
    )
    assert changed["version"] == 2
    info = await port.category(vip)
    assert info is not None and (info.project_id, info.paid) == (None, False)
    unchanged = await command(s, "PATCH", f"/categories/{vip}", {"paid": False})
    assert unchanged == {"id": vip, "version": 2, "position": 0}
    await command(
        s, "PATCH", f"/categories/{other}", {"department_id": "d-else"}, expected_version=1
    )
    assert [c["id"] for c in await read(s, "/categories", department_id=dept)] == [vip, billing]

    await command(s, "DELETE", f"/categories/{billing}")
    assert await port.category(billing) is None
    assert await port.category("no such category") is None
    assert [c["id"] for c in await read(s, "/categories", department_id=dept)] == [vip]
    gone = await s.http.get(f"/categories/{billing}", headers=s.admin)
    assert gone.status_code == 404
    again = await s.http.delete(f"/categories/{billing}", headers=s.admin)
    assert again.status_code == 404
    events = await s.store.read_stream(f"ticket-category-{vip}")
    assert [e.type for e in events] == ["TicketCategoryCreated", "TicketCategoryChanged"]
    assert events[1].data["changed"] == ["project_id", "paid"]


async def test_a_known_department_check_refuses_unknown_ones(stack: Stack) -> None:
    s = stack
    assert s.runtime.db is not None

    async def known(department_id: str) -> bool:
        return department_id == "d-known"

    catalog = SupportCatalog(s.store, s.runtime.db, known_department=known)
    created = await catalog.create_category(
        STAFF, CategoryDraft(topic="T", department_id="d-known")
    )
    with pytest.raises(DomainError) as error:
        await catalog.create_category(STAFF, CategoryDraft(topic="T", department_id="d-unknown"))
    assert error.value.field == "department_id"
    with pytest.raises(DomainError) as error:
        await catalog.change_category(STAFF, created.id, CategoryPatch(department_id="d-unknown"))
    assert error.value.field == "department_id"


# ---------------------------------------------------------------- templates


async def test_templates_and_their_rendering(stack: Stack) -> None:
    s = stack
    tag = uuid.uuid4().hex[:8]
    template = await new_template(
        s,
        name=f"Greeting {tag}",
        subject="Re: %ticket_subject% [#%ticket_id%]",
        body="Dear %client_person%,\n%department% here. %signature%\n-- %admin_name%",
    )
    await new_template(s, name=f"Apology {tag}")
    listed = await read(s, "/templates", headers=s.by_right["reply"], name=tag)
    assert [t["name"] for t in listed] == [f"Apology {tag}", f"Greeting {tag}"]
    assert listed[1]["body"].startswith("Dear %client_person%")

    values = {
        "client_person": "Anna Schmidt",
        "admin_name": "Maria",
        "ticket_id": "T-42",
        "ticket_subject": "VPS down",
        "department": "Technical support",
    }
    port: CatalogPort = s.catalog
    assert await port.render_template(template, values) == (
        "Re: VPS down [#T-42]",
        "Dear Anna Schmidt,\nTechnical support here. %signature%\n-- Maria",
    )
    await command(s, "PATCH", f"/templates/{template}", {"subject": "", "body": "Hi %admin_name%"})
    assert await port.render_template(template, {"admin_name": "Ivan"}) == ("", "Hi Ivan")
    shown = await read(s, f"/templates/{template}", headers=s.by_right["templates"])
    assert (shown["subject"], shown["body"], shown["version"]) == ("", "Hi %admin_name%", 2)

    await command(s, "DELETE", f"/templates/{template}")
    with pytest.raises(NotFound):
        await port.render_template(template, values)
    with pytest.raises(NotFound):
        await port.render_template(str(uuid.uuid4()), values)
    with pytest.raises(NotFound):
        await port.render_template("", values)
    assert [t["name"] for t in await read(s, "/templates", name=tag)] == [f"Apology {tag}"]


# ---------------------------------------------------------------- announcements


async def test_announcements_are_listed_to_staff_and_active_ones_to_clients(stack: Stack) -> None:
    s = stack
    tag = uuid.uuid4().hex[:8]
    now = await new_announcement(
        s, text={"en": f"Now {tag}", "ru": f"Сейчас {tag}"}, starts_at=later(minutes=-1)
    )
    soon = await new_announcement(
        s, text=f"Soon {tag}", starts_at=later(hours=1), ends_at=later(hours=2), blocking=True
    )
    everything = await read(s, "/announcements", limit=500)
    mine = {a["id"]: a for a in everything if tag in str(a["text"])}
    assert set(mine) == {now["id"], soon["id"]}
    assert mine[now["id"]]["text"] == {"en": f"Now {tag}", "ru": f"Сейчас {tag}"}
    assert mine[now["id"]]["active"] is True and mine[now["id"]]["blocking"] is False
    assert mine[soon["id"]]["text"] == f"Soon {tag}"
    assert mine[soon["id"]]["active"] is False and mine[soon["id"]]["blocking"] is True

    def ids(found: list[dict[str, Any]]) -> set[str]:
        return {a["id"] for a in found if tag in str(a["text"])}

    assert ids(await read(s, "/announcements", active="true")) == {now["id"]}
    assert ids(await read(s, "/announcements", active="false")) == {soon["id"]}
    # Clients see active ones only, whatever they ask for.
    assert ids(await read(s, "/announcements", headers=s.client)) == {now["id"]}
    assert ids(await read(s, "/announcements", headers=s.client, active="false")) == {now["id"]}
    hidden = await s.http.get(f"/announcements/{soon['id']}", headers=s.client)
    assert hidden.status_code == 404
    assert (await read(s, f"/announcements/{now['id']}", headers=s.client))["active"] is True

    # DELETE ends it: it stays listed for staff, no longer active; again changes nothing.
    ended = await command(s, "DELETE", f"/announcements/{now['id']}")
    assert ended["version"] == 2
    shown = await read(s, f"/announcements/{now['id']}")
    assert shown["active"] is False and shown["ended_at"] is not None
    assert ids(await read(s, "/announcements", headers=s.client)) == set()
    again = await command(s, "DELETE", f"/announcements/{now['id']}")
    assert again == {"id": now["id"], "version": 2, "position": 0}


async def test_a_blocking_announcement_blocks_inside_its_window_only(stack: Stack) -> None:
    s = stack
    port: CatalogPort = s.catalog
    start = datetime.now(UTC) + timedelta(days=400)  # a window no other test uses
    end = start + timedelta(hours=1)
    quiet = await new_announcement(
        s, text="not blocking", starts_at=start.isoformat(), ends_at=end.isoformat()
    )
    assert await port.blocking_announcement(start + timedelta(minutes=1)) is None
    blocking = await new_announcement(
        s,
        text={"en": "Migration", "ru": "Переезд"},
        starts_at=start.isoformat(),
        ends_at=end.isoformat(),
        blocking=True,
    )
    assert quiet["id"] != blocking["id"]
    assert await port.blocking_announcement(start - timedelta(seconds=1)) is None  # before
    found = await port.blocking_announcement(start)  # the start is inside
    assert found is not None and found.announcement_id == blocking["id"]
    assert (found.text, found.blocking, found.starts_at, found.ends_at) == (
        "Migration",
        True,
        start,
        end,
    )
    inside = await port.blocking_announcement(end - timedelta(seconds=1))
    assert inside is not None and inside.announcement_id == blocking["id"]
    assert await port.blocking_announcement(end) is None  # the end is outside
    assert await port.blocking_announcement(end + timedelta(days=1)) is None  # after
    # Another replica (its own store connection) sees the same.
    assert s.runtime.db is not None
    replica_store = await open_event_store(s.url)
    try:
        replica = SupportCatalog(replica_store, s.runtime.db)
        again = await replica.blocking_announcement(start + timedelta(minutes=30))
        assert again is not None and again.announcement_id == blocking["id"]
    finally:
        await replica_store.close()


async def test_the_block_holds_from_the_answer_on_even_while_the_read_model_lags(
    stack: Stack,
) -> None:
    """The projection is stalled by a table lock: the check must not depend on it."""
    s = stack
    port: CatalogPort = s.catalog
    lock = await asyncpg.connect(s.url)
    try:
        transaction = lock.transaction()
        await transaction.start()
        await lock.execute("LOCK TABLE catalog_announcements IN EXCLUSIVE MODE")
        published = await new_announcement(
            s, text="Emergency", starts_at=later(seconds=-5), blocking=True
        )
        now = datetime.now(UTC)
        found = await port.blocking_announcement(now)
        assert found is not None and found.announcement_id == published["id"]
        assert found.text == "Emergency"
        # The read model has not applied it: the answer came from the store.
        runner = s.runtime.runners["catalog_directory"]
        assert runner.position < published["position"]
        # Ending it while the read model still lags: not blocking any more, at once.
        await command(s, "DELETE", f"/announcements/{published['id']}")
        assert await port.blocking_announcement(datetime.now(UTC)) is None
        await transaction.rollback()
    finally:
        await lock.close()
    # Once the read model caught up, it says the same, and the marks are cleared.
    shown = await read(s, f"/announcements/{published['id']}")
    assert shown["active"] is False and shown["blocking"] is True
    assert await port.blocking_announcement(datetime.now(UTC)) is None
    assert s.runtime.db is not None
    async with s.runtime.db.engine.connect() as conn:
        marks = await conn.execute(
            select(announcement_marks).where(
                announcement_marks.c.announcement_id == published["id"]
            )
        )
        assert marks.all() == []


# ---------------------------------------------------------------- settings


async def test_support_settings(stack: Stack) -> None:
    s = stack
    port: CatalogPort = s.catalog
    before = await read(s, "/support/settings", headers=s.client)
    assert set(before) == {
        "transfer_notices_shown",
        "close_after_days",
        "rate_after_days",
        "rating_mode",
        "unknown_senders",
        "version",
    }
    first = await command(
        s,
        "PUT",
        "/support/settings",
        {"transfer_notices_shown": 5, "close_after_days": None, "rating_mode": "message"},
        headers=s.by_right["settings"],
    )
    assert first["id"] == "support-settings"
    after = await read(s, "/support/settings")
    assert after == {
        "transfer_notices_shown": 5,
        "close_after_days": None,
        "rate_after_days": before["rate_after_days"],
        "rating_mode": "message",
        "unknown_senders": before["unknown_senders"],
        "version": first["version"],
    }
    settings = await port.settings()
    assert (settings.transfer_notices_shown, settings.close_after_days, settings.rating_mode) == (
        5,
        None,
        "message",
    )
    # The same values again: nothing written.
    same = await command(s, "PUT", "/support/settings", {"transfer_notices_shown": 5})
    assert same == {"id": "support-settings", "version": first["version"], "position": 0}
    second = await command(
        s, "PUT", "/support/settings", {"rate_after_days": 0, "close_after_days": 14}
    )
    [event] = await s.store.read_stream("support-settings", second["version"])
    assert event.type == "SupportSettingsChanged"
    assert event.data == {
        "changed": ["close_after_days", "rate_after_days"],
        "transfer_notices_shown": 5,
        "close_after_days": 14,
        "rate_after_days": 0,
        "rating_mode": "message",
        "unknown_senders": "open",
    }
    assert event.actor.id == "s-admin"
    # Two changes of different fields at once: both hold (the loser re-decides).
    both = await asyncio.gather(
        s.http.put("/support/settings", json={"transfer_notices_shown": 9}, headers=s.admin),
        s.http.put("/support/settings", json={"rating_mode": "ticket"}, headers=s.admin),
    )
    assert [a.status_code for a in both] == [200, 200], [a.text for a in both]
    current = await port.settings()
    assert (current.transfer_notices_shown, current.rating_mode) == (9, "ticket")
    # Back to the defaults for the other tests.
    await command(
        s,
        "PUT",
        "/support/settings",
        {
            "transfer_notices_shown": 3,
            "close_after_days": 7,
            "rate_after_days": 1,
            "rating_mode": "ticket",
        },
    )


# ---------------------------------------------------------------- paid requests


async def test_paid_requests_are_credited_taken_and_returned(stack: Stack) -> None:
    s = stack
    port: CatalogPort = s.catalog
    client = "cl-main"
    assert await port.paid_balance(client) == 0
    with pytest.raises(PaymentRequired) as empty:
        await port.take_paid_request(client, "t-0", Actor(id=client, kind="client"))
    assert empty.value.code == "no_paid_requests"

    credited = await command(
        s,
        "POST",
        f"/clients/{client}/paid-requests",
        {"amount": 2, "comment": "invoice 7"},
        headers=s.by_right["payments"],
    )
    assert credited["id"] == client
    assert await port.paid_balance(client) == 2
    as_client = Actor(id=client, kind="client")
    await port.take_paid_request(client, "t-1", as_client)
    await port.take_paid_request(client, "t-1", as_client)  # a redelivered take
    assert await port.paid_balance(client) == 1
    await port.return_paid_request(client, "t-1", STAFF)
    await port.return_paid_request(client, "t-1", STAFF)  # returned once only
    await port.return_paid_request(client, "t-never", STAFF)
    assert await port.paid_balance(client) == 2
    await port.take_paid_request(client, "t-2", as_client)

    events = await s.store.read_stream(f"paid-requests-{client}")
    assert [e.type for e in events] == [
        "PaidRequestsCredited",
        "PaidRequestTaken",
        "PaidRequestReturned",
        "PaidRequestTaken",
    ]
    s.last = max(s.last, events[-1].position)
    # The client reads their own balance; staff with tickets.view too; the history pages.
    mine = await read(s, f"/clients/{client}/paid-requests", headers=s.client)
    assert (mine["client_id"], mine["balance"], mine["version"]) == (client, 1, 4)
    assert [(h["kind"], h["amount"], h["balance"], h["ticket_id"]) for h in mine["history"]] == [
        ("taken", -1, 1, "t-2"),
        ("returned", 1, 2, "t-1"),
        ("taken", -1, 1, "t-1"),
        ("credited", 2, 2, None),
    ]
    assert mine["history"][-1]["comment"] == "invoice 7"
    assert mine["history"][-1]["actor_id"] == "s-payments"
    page = await s.http.get(
        f"/clients/{client}/paid-requests",
        params={"limit": 1, "offset": 3, "min_position": s.last},
        headers=s.by_right["view"],
    )
    assert page.status_code == 200 and page.headers["x-total-count"] == "4"
    assert [h["kind"] for h in page.json()["history"]] == ["credited"]
    unknown = await read(s, f"/clients/{new_client()}/paid-requests")
    assert (unknown["balance"], unknown["history"]) == (0, [])
    theirs = await s.http.get("/clients/cl-other/paid-requests", headers=s.client)
    assert theirs.status_code == 404


async def test_two_replicas_taking_the_last_request_at_once_take_it_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = stack
    assert s.runtime.db is not None
    stores = [await open_event_store(s.url) for _ in range(2)]
    conflicts = 0
    for store in stores:
        original = store.append

        async def counting(*args: Any, _append: Any = original, **kwargs: Any) -> Any:
            nonlocal conflicts
            try:
                return await _append(*args, **kwargs)
            except ConcurrencyError:
                conflicts += 1
                raise

        monkeypatch.setattr(store, "append", counting)
    try:
        replicas = [SupportCatalog(store, s.runtime.db) for store in stores]
        for round_ in range(10):
            client = new_client()
            await command(s, "POST", f"/clients/{client}/paid-requests", {"amount": 1})
            results = await asyncio.gather(
                *(
                    replica.take_paid_request(client, f"t-{round_}-{n}", STAFF)
                    for n, replica in enumerate(replicas)
                ),
                return_exceptions=True,
            )
            won = [r for r in results if r is None]
            lost = [r for r in results if isinstance(r, PaymentRequired)]
            assert (len(won), len(lost)) == (1, 1), results
            assert lost[0].code == "no_paid_requests"
            events = await s.store.read_stream(f"paid-requests-{client}")
            assert [e.type for e in events] == ["PaidRequestsCredited", "PaidRequestTaken"]
            assert events[-1].data["balance"] == 0
        # Many at once against a few left: exactly that many win; a credit meanwhile counts.
        client = new_client()
        await command(s, "POST", f"/clients/{client}/paid-requests", {"amount": 3})
        takes = [replicas[n % 2].take_paid_request(client, f"t-many-{n}", STAFF) for n in range(12)]
        results = await asyncio.gather(*takes, return_exceptions=True)
        assert sum(r is None for r in results) == 3, results
        assert all(r is None or isinstance(r, PaymentRequired) for r in results), results
        assert await replicas[0].paid_balance(client) == 0
        # The same ticket taken on both replicas at once: one request.
        await command(s, "POST", f"/clients/{client}/paid-requests", {"amount": 5, "comment": None})
        await asyncio.gather(
            *(replica.take_paid_request(client, "t-same", STAFF) for replica in replicas)
        )
        assert await replicas[1].paid_balance(client) == 4
        events = await s.store.read_stream(f"paid-requests-{client}")
        taken = [e.data["ticket_id"] for e in events if e.type == "PaidRequestTaken"]
        assert taken.count("t-same") == 1 and len(taken) == 4
        # The races were real: appends collided and were decided again.
        assert conflicts > 0
    finally:
        for store in stores:
            await store.close()


async def test_the_read_model_is_rebuilt_by_replay(stack: Stack) -> None:
    """Replaying the store into an empty database gives the same catalogue rows."""
    s = stack
    await new_category(s, department_id="d-rebuild")
    s.last = max(s.last, await s.store.head_position())  # also what the port wrote directly
    await read(s, "/categories")  # the live read model is at the head now
    assert s.runtime.db is not None
    tables = sorted(CatalogDirectory.metadata.sorted_tables, key=lambda t: t.name)

    async def rows(db: ReadModelDB) -> dict[str, list[Any]]:
        async with db.engine.connect() as conn:
            return {
                table.name: sorted((tuple(r) for r in await conn.execute(select(table))), key=repr)
                for table in tables
            }

    async with fresh_database() as url:
        db = await ReadModelDB.open(url)
        try:
            applied = await ProjectionRunner(s.store, db, CatalogDirectory()).catch_up()
            assert applied > 0
            live = await rows(s.runtime.db)
            replayed = await rows(db)
        finally:
            await db.close()
    assert replayed == live
    assert any(r for r in replayed["catalog_categories"])
