"""Companies over real HTTP: a clients app with only the companies router, on PostgreSQL.

The app runs the kernel for real (store, read models, relay to the broker,
access consumer); staff access is seeded straight into its access copy and
tokens are issued with the shared secret, as identity would. Identity's side
of the company handover is a recorder (the real handover is tested with
identity); ``client_exists`` knows the clients the tests register in
``KNOWN_CLIENTS``. One app is shared by the module; every test makes its own
companies and clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from services.clients.api.companies import router
from services.clients.app.companies import Companies
from services.clients.domain.company_events import ContactAdded
from services.clients.domain.events import registry
from services.clients.projections.companies import (
    CompanyDirectory,
    companies,
    company_contacts,
    company_equipment,
    company_members,
    company_projections,
)
from shared.access.control import IpPolicy, StaffAccessChanged, issue_token
from shared.domain.events import RecordedEvent
from shared.eventstore import EventStore
from shared.privacy import shredding
from shared.privacy.shredding import KeyRing, Sealer, is_sealed
from shared.projections.runner import ProjectionRunner
from shared.readmodel.database import ReadModelDB
from shared.runtime.service import ServiceRuntime, ServiceSpec, create_app
from shared.runtime.settings import ServiceSettings
from tests.conftest import fresh_database
from tests.http_util import serving
from tests.support.keys import identity_key

KNOWN_CLIENTS: set[str] = set()
Headers = dict[str, str]


@dataclass
class IdentityRecorder:
    """Stands in for ``IdentityPort``: records what identity is told; can be made to fail."""

    calls: list[tuple[str, str | None, bool]] = field(default_factory=list)
    failing: bool = False

    async def update(
        self, client_id: str, *, company_id: str | None, company_manager: bool
    ) -> None:
        if self.failing:
            raise ConnectionError("identity is down")
        self.calls.append((client_id, company_id, company_manager))


@dataclass
class Stack:
    http: httpx.AsyncClient
    app: FastAPI
    url: str
    identity: IdentityRecorder
    admin: Headers
    viewer: Headers  # clients.view only
    changer: Headers  # clients.companies only
    nobody: Headers  # no rights
    last: int = 0  # the position of the latest write the tests made

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    @property
    def store(self) -> EventStore:
        assert self.runtime.store is not None
        return self.runtime.store


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


def bearer(staff_id: str) -> Headers:
    token = issue_token(
        identity_key(),
        principal_id=staff_id,
        kind="staff",
        session_id=str(uuid.uuid4()),
        lifetime=timedelta(hours=1),
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with fresh_database() as url:
        identity = IdentityRecorder()

        async def client_exists(client_id: str) -> bool:
            return client_id in KNOWN_CLIENTS

        async def compose(runtime: ServiceRuntime) -> SimpleNamespace:
            """As the clients service builds it: the keys live in the read-model database."""
            assert runtime.store is not None and runtime.db is not None
            keys = KeyRing(runtime.db)
            await keys.create_tables()
            return SimpleNamespace(
                companies=Companies(
                    store=runtime.store,
                    db=runtime.db,
                    sealer=Sealer(registry, keys),
                    identity=identity,
                    client_exists=client_exists,
                )
            )

        spec = ServiceSpec(
            name="clients",
            routers=[router],
            projections=company_projections,
            compose=compose,
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
                    staff("s-viewer", ["clients.view"]),
                    staff("s-changer", ["clients.companies"]),
                    staff("s-nobody", []),
                ]
            )
            yield Stack(
                http=http,
                app=app,
                url=url,
                identity=identity,
                admin=bearer("s-admin"),
                viewer=bearer("s-viewer"),
                changer=bearer("s-changer"),
                nobody=bearer("s-nobody"),
            )


@contextlib.asynccontextmanager
async def key_ring(url: str) -> AsyncIterator[Sealer]:
    """A sealer on a key ring of its own (empty cache), as a new process or a rebuild has."""
    db = await ReadModelDB.open(url)
    try:
        yield Sealer(registry, KeyRing(db))
    finally:
        await db.close()


async def log_until(s: Stack, position: int, after: int = 0) -> list[RecordedEvent]:
    """The log after ``after``, once it shows ``position``.

    PostgreSQL readers see only what commits older than every running
    transaction made, so the last write may take a moment to show.
    """
    while True:
        events = await s.store.read_all(after, 1_000_000)
        if events and events[-1].position >= position:
            return events
        await asyncio.sleep(0.01)


async def nothing_written_since(s: Stack, mark: int) -> None:
    """Only a fence written after ``mark`` is in the log after it."""
    fence = await command(s, "POST", "/companies", {"name": "Fence"}, 201)
    events = await log_until(s, fence["position"], after=mark)
    assert [e.stream for e in events] == [f"company-{fence['id']}"], events


def new_client() -> str:
    client_id = f"cl-{uuid.uuid4().hex[:10]}"
    KNOWN_CLIENTS.add(client_id)
    return client_id


async def command(
    s: Stack,
    method: str,
    path: str,
    body: Any = None,
    status: int = 200,
    headers: Headers | None = None,
) -> dict[str, Any]:
    answer = await s.http.request(method, path, json=body, headers=headers or s.admin)
    assert answer.status_code == status, (method, path, answer.text)
    result: dict[str, Any] = answer.json()
    assert set(result) == {"id", "version", "position"}
    s.last = max(s.last, result["position"])
    return result


async def new_company(s: Stack, name: str | None = None) -> str:
    body = {"name": name or f"Acme {uuid.uuid4().hex[:6]}"}
    return str((await command(s, "POST", "/companies", body, status=201))["id"])


async def read(s: Stack, path: str, **params: Any) -> Any:
    """A read after every write the tests made so far (``min_position``)."""
    answer = await s.http.get(path, params={"min_position": s.last, **params}, headers=s.admin)
    assert answer.status_code == 200, answer.text
    return answer.json()


# ---------------------------------------------------------------- rights


async def test_every_endpoint_needs_its_right(stack: Stack) -> None:
    s = stack
    company = await new_company(s)
    doomed = await new_company(s)
    client = new_client()
    contact = await command(
        s, "POST", f"/companies/{company}/contacts", {"email": "a@example.com"}, 201
    )
    item = await command(s, "POST", f"/companies/{company}/equipment", {"name": "Rack"}, 201)
    base = f"/companies/{company}"
    view, change = "clients.view", "clients.companies"
    calls: list[tuple[str, str, Any, str]] = [
        ("GET", "/companies", None, view),
        ("GET", base, None, view),
        ("POST", "/companies", {"name": "By the changer"}, change),
        ("PATCH", base, {"name": "Renamed"}, change),
        ("POST", f"{base}/members", {"client_id": client}, change),
        ("PUT", f"{base}/manager", {"client_id": client}, change),
        ("DELETE", f"{base}/members/{client}", None, change),
        ("POST", f"{base}/contacts", {"email": "c@d.example"}, change),
        ("PATCH", f"{base}/contacts/{contact['id']}", {"name": "Ann"}, change),
        ("DELETE", f"{base}/contacts/{contact['id']}", None, change),
        ("POST", f"{base}/equipment", {"name": "Switch"}, change),
        ("PATCH", f"{base}/equipment/{item['id']}", {"serial": "S-1"}, change),
        ("DELETE", f"{base}/equipment/{item['id']}", None, change),
        ("DELETE", f"/companies/{doomed}", None, change),
    ]
    mark = s.last
    for method, path, body, right in calls:
        anonymous = await s.http.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        other = s.changer if right == view else s.viewer
        for headers in (s.nobody, other):
            refused = await s.http.request(method, path, json=body, headers=headers)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["error"]["code"] == "forbidden"
            assert right in refused.json()["error"]["message"]
    await nothing_written_since(s, mark)
    for method, path, body, right in calls:
        headers = s.viewer if right == view else s.changer
        # A read names the writes made so far (the read model may be a moment behind them).
        params = {"min_position": s.last} if method == "GET" else None
        allowed = await s.http.request(method, path, json=body, headers=headers, params=params)
        assert allowed.status_code in (200, 201), (method, path, allowed.text)
    # The API documents itself (the equipment tree is a recursive model).
    openapi = await s.http.get("/openapi.json")
    assert openapi.status_code == 200
    assert "/companies/{company_id}/equipment/{item_id}" in openapi.json()["paths"]
    # The changes were recorded as the changer's.
    events = await s.store.read_stream(f"company-{doomed}")
    assert events[-1].type == "CompanyDeleted" and events[-1].actor.id == "s-changer"


# ---------------------------------------------------------------- bad input


async def test_bad_input_is_a_422_naming_the_field_and_writes_nothing(stack: Stack) -> None:
    s = stack
    company = await new_company(s)
    other = await new_company(s)
    member, outsider = new_client(), new_client()
    await command(s, "POST", f"/companies/{company}/members", {"client_id": member})
    contact = await command(
        s, "POST", f"/companies/{company}/contacts", {"email": "x@example.com"}, 201
    )
    item = await command(s, "POST", f"/companies/{company}/equipment", {"name": "Rack"}, 201)
    foreign = await command(s, "POST", f"/companies/{other}/equipment", {"name": "Far"}, 201)
    base = f"/companies/{company}"
    before = await read(s, base)
    mark = s.last

    async def refused(
        method: str, path: str, field: str | None, status: int = 422, **kw: Any
    ) -> dict[str, Any]:
        headers = kw.pop("headers", s.admin)
        answer = await s.http.request(method, path, headers=headers, **kw)
        assert answer.status_code == status, (method, path, kw, answer.text)
        error: dict[str, Any] = answer.json()["error"]
        if field is not None:
            assert field in error["message"] or field in str(error.get("fields")), error
        return error

    async def malformed(method: str, path: str) -> None:
        await refused(
            method,
            path,
            None,
            content=b'{"name": ',
            headers={**s.admin, "content-type": "application/json"},
        )

    await refused("POST", "/companies", "body.name", json={})
    await refused("POST", "/companies", "name", json={"name": "  "})
    await refused("POST", "/companies", "name", json={"name": "x" * 201})
    await refused("POST", "/companies", "body.name", json={"name": 7})
    await refused("POST", "/companies", "body.owner", json={"name": "x", "owner": "me"})
    await refused("POST", "/companies", "body", json=["a", "list"])
    await malformed("POST", "/companies")

    await refused("PATCH", base, "name", json={"name": None})
    await refused("PATCH", base, "body.color", json={"color": "red"})
    await refused("PATCH", base, "expected_version", params={"expected_version": -1}, json={})
    await malformed("PATCH", base)

    members = f"{base}/members"
    await refused("POST", members, "client_id", json={"client_id": "no-such-client"})
    await refused("POST", members, "client_id", json={"client_id": ""})
    await refused("POST", members, "body.client_id", json={})
    await refused("POST", members, "body.manager", json={"client_id": outsider, "manager": "maybe"})
    await malformed("POST", members)
    await refused("PUT", f"{base}/manager", "body.client_id", json={})
    await refused("PUT", f"{base}/manager", "client_id", json={"client_id": outsider})
    await refused("PUT", f"{base}/manager", "client_id", json={"client_id": "no-such-client"})

    contacts = f"{base}/contacts"
    await refused("POST", contacts, "email", json={})
    await refused("POST", contacts, "email", json={"name": "Ann", "email": "not-an-address"})
    await refused("POST", contacts, "email", json={"email": "ann@contacts.invalid"})
    await refused("POST", contacts, "messenger_id", json={"messenger": "telegram"})
    await refused("POST", contacts, "messenger", json={"messenger_id": "42"})
    await refused("POST", contacts, "phone", json={"email": "a@example.com", "phone": "call"})
    await refused(
        "POST", contacts, "body.notifications", json={"email": "a@example.com", "notifications": 3}
    )
    await refused("POST", contacts, "body.fax", json={"email": "a@example.com", "fax": "1"})
    await malformed("POST", contacts)
    one_contact = f"{contacts}/{contact['id']}"
    await refused("PATCH", one_contact, "email", json={"email": "nope"})
    await refused("PATCH", one_contact, "email", json={"email": None})
    await refused("PATCH", one_contact, "notifications", json={"notifications": None})
    await malformed("PATCH", one_contact)

    equipment = f"{base}/equipment"
    await refused("POST", equipment, "body.name", json={})
    await refused("POST", equipment, "name", json={"name": " "})
    await refused("POST", equipment, "parent_id", json={"name": "x", "parent_id": "nope"})
    # An item of another company is no parent here.
    await refused("POST", equipment, "parent_id", json={"name": "x", "parent_id": foreign["id"]})
    await refused("POST", equipment, "type", json={"name": "x", "type": "t" * 101})
    await malformed("POST", equipment)
    one_item = f"{equipment}/{item['id']}"
    await refused("PATCH", one_item, "parent_id", json={"parent_id": item["id"]})
    await refused("PATCH", one_item, "name", json={"name": None})

    await refused("GET", "/companies", "limit", params={"limit": 0})
    await refused("GET", "/companies", "offset", params={"offset": -1})
    await refused("GET", "/companies", "min_position", params={"min_position": -1})

    missing = f"/companies/{uuid.uuid4()}"
    await refused("GET", missing, None, 404)
    await refused("PATCH", missing, None, 404, json={"name": "x"})
    await refused("DELETE", missing, None, 404)
    await refused("POST", f"{missing}/members", None, 404, json={"client_id": outsider})
    await refused("PUT", f"{missing}/manager", None, 404, json={"client_id": None})
    await refused("POST", f"{missing}/contacts", None, 404, json={"email": "a@example.com"})
    await refused("POST", f"{missing}/equipment", None, 404, json={"name": "x"})
    await refused("DELETE", f"{members}/{outsider}", None, 404)
    await refused("PATCH", f"{contacts}/{uuid.uuid4()}", None, 404, json={"name": "x"})
    await refused("DELETE", f"{contacts}/{uuid.uuid4()}", None, 404)
    await refused("PATCH", f"{equipment}/{uuid.uuid4()}", None, 404, json={"name": "x"})
    await refused("DELETE", f"{equipment}/{uuid.uuid4()}", None, 404)
    error = await refused(
        "PATCH", base, None, 409, params={"expected_version": 1}, json={"name": "Stale"}
    )
    assert error["code"] == "version_conflict"

    # Nothing was half-written: the store has not moved, the company reads the same.
    await nothing_written_since(s, mark)
    assert await read(s, base) == before
    assert s.identity.calls[-1] == (member, company, False)  # no call for the refused


# ---------------------------------------------------------------- members, manager, identity


async def test_members_and_the_manager_reach_identity(stack: Stack) -> None:
    s = stack
    company = await new_company(s, "Members Inc")
    ann, bob, eve = new_client(), new_client(), new_client()
    calls = s.identity.calls
    members = f"/companies/{company}/members"

    start = len(calls)
    await command(s, "POST", members, {"client_id": ann})
    await command(s, "POST", members, {"client_id": bob, "manager": True})
    assert calls[start:] == [(ann, company, False), (bob, company, True)]

    start = len(calls)
    moved = await command(s, "PUT", f"/companies/{company}/manager", {"client_id": ann})
    assert sorted(calls[start:]) == sorted([(ann, company, True), (bob, company, False)])
    shown = await read(s, f"/companies/{company}", min_position=moved["position"])
    assert shown["manager_id"] == ann
    assert shown["members"] == [
        {"client_id": ann, "manager": True},
        {"client_id": bob, "manager": False},
    ]

    # Adding again changes nothing but tells identity again (what repairs a failed call).
    again = await command(s, "POST", members, {"client_id": ann})
    assert again["position"] == 0 and again["version"] == moved["version"]

    # The manager leaves: unassigned and out.
    start = len(calls)
    await command(s, "DELETE", f"{members}/{ann}")
    assert calls[start:] == [(ann, None, False)]
    shown = await read(s, f"/companies/{company}")
    assert shown["manager_id"] is None and [m["client_id"] for m in shown["members"]] == [bob]

    # One company per client.
    other = await new_company(s)
    await read(s, "/companies")
    answer = await s.http.post(
        f"/companies/{other}/members", json={"client_id": bob}, headers=s.admin
    )
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "client_in_other_company"
    await command(s, "POST", f"/companies/{other}/members", {"client_id": ann})  # ann left: free
    found = await read(s, "/companies", client_id=bob)
    assert [c["id"] for c in found] == [company]
    assert found[0]["member_count"] == 1

    # Identity down: the change is recorded, the answer says so, a retry tells identity.
    s.identity.failing = True
    try:
        answer = await s.http.post(members, json={"client_id": eve}, headers=s.admin)
    finally:
        s.identity.failing = False
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "identity_not_updated"
    start = len(calls)
    await command(s, "POST", members, {"client_id": eve})
    assert calls[start:] == [(eve, company, False)]

    # Deleting the company: every member leaves.
    start = len(calls)
    await command(s, "DELETE", f"/companies/{company}")
    assert sorted(calls[start:]) == sorted([(bob, None, False), (eve, None, False)])
    assert (await read(s, "/companies", client_id=bob)) == []
    gone = await s.http.get(f"/companies/{company}", headers=s.admin)
    assert gone.status_code == 404


async def test_listing_filters_and_pages(stack: Stack) -> None:
    s = stack
    tag = uuid.uuid4().hex[:8]
    ids = [await new_company(s, f"Zeta {tag} {n}") for n in ("b", "a", "c")]
    await new_company(s, f"Other {tag}_%")
    found = await read(s, "/companies", name=f"zeta {tag}")
    assert [c["name"] for c in found] == [f"Zeta {tag} a", f"Zeta {tag} b", f"Zeta {tag} c"]
    page = await s.http.get(
        "/companies",
        params={"name": f"ZETA {tag}", "limit": 2, "offset": 1, "min_position": s.last},
        headers=s.viewer,
    )
    assert page.headers["x-total-count"] == "3"
    assert [c["id"] for c in page.json()] == [ids[0], ids[2]]
    # LIKE wildcards in the filter are plain characters.
    assert [c["name"] for c in await read(s, "/companies", name=f"{tag}_%")] == [f"Other {tag}_%"]
    assert await read(s, "/companies", name=f"{tag}__") == []


# ---------------------------------------------------------------- equipment


async def test_the_equipment_tree(stack: Stack) -> None:
    s = stack
    company = await new_company(s)
    equipment = f"/companies/{company}/equipment"

    async def add(name: str, parent: str | None = None, **extra: Any) -> str:
        body = {"name": name, "parent_id": parent, **extra}
        return str((await command(s, "POST", equipment, body, 201))["id"])

    rack = await add("Rack A", type="rack")
    server = await add("web-1", rack, type="server", serial="SN-1")
    disk = await add("SSD", server, type="disk")
    switch = await add("Switch")
    shown = await read(s, f"/companies/{company}")
    assert shown["equipment"] == [
        {
            "id": rack,
            "name": "Rack A",
            "type": "rack",
            "serial": None,
            "parent_id": None,
            "children": [
                {
                    "id": server,
                    "name": "web-1",
                    "type": "server",
                    "serial": "SN-1",
                    "parent_id": rack,
                    "children": [
                        {
                            "id": disk,
                            "name": "SSD",
                            "type": "disk",
                            "serial": None,
                            "parent_id": server,
                            "children": [],
                        }
                    ],
                }
            ],
        },
        {
            "id": switch,
            "name": "Switch",
            "type": None,
            "serial": None,
            "parent_id": None,
            "children": [],
        },
    ]

    cycle = await s.http.patch(f"{equipment}/{rack}", json={"parent_id": disk}, headers=s.admin)
    assert cycle.status_code == 422, cycle.text
    assert cycle.json()["error"]["field"] == "parent_id"
    blocked = await s.http.delete(f"{equipment}/{server}", headers=s.admin)
    assert blocked.status_code == 409, blocked.text
    assert blocked.json()["error"]["code"] == "has_children"

    await command(s, "PATCH", f"{equipment}/{server}", {"parent_id": switch, "serial": "SN-2"})
    await command(s, "DELETE", f"{equipment}/{rack}")  # a leaf now
    shown = await read(s, f"/companies/{company}")
    [root] = shown["equipment"]
    assert root["id"] == switch
    assert [(c["id"], c["serial"]) for c in root["children"]] == [(server, "SN-2")]
    assert [c["id"] for c in root["children"][0]["children"]] == [disk]


# ---------------------------------------------------------------- contacts


async def test_contacts_from_messengers_get_a_generated_email(stack: Stack) -> None:
    s = stack
    company = await new_company(s)
    contacts = f"/companies/{company}/contacts"
    made = await command(
        s,
        "POST",
        contacts,
        {"name": "Ivan", "messenger": "Telegram", "messenger_id": "@Ivan_P"},
        201,
    )
    plain = await command(
        s, "POST", contacts, {"email": "Olga@Example.COM", "notifications": False}, 201
    )

    def contact(shown: dict[str, Any], contact_id: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [c for c in shown["contacts"] if c["id"] == contact_id]
        assert len(found) == 1
        return found[0]

    shown = await read(s, f"/companies/{company}")
    assert contact(shown, made["id"]) == {
        "id": made["id"],
        "name": "Ivan",
        "email": "telegram.ivan_p@contacts.invalid",
        "email_generated": True,
        "phone": None,
        "messenger": "telegram",
        "messenger_id": "@Ivan_P",
        "notifications": True,
    }
    olga = contact(shown, plain["id"])
    assert (olga["email"], olga["email_generated"], olga["notifications"]) == (
        "Olga@example.com",
        False,
        False,
    )

    # The generated address follows the messenger id, until a real one is given.
    await command(s, "PATCH", f"{contacts}/{made['id']}", {"messenger_id": "ivan2"})
    changed = contact(await read(s, f"/companies/{company}"), made["id"])
    assert changed["email"] == "telegram.ivan2@contacts.invalid"
    await command(s, "PATCH", f"{contacts}/{made['id']}", {"email": "ivan@example.com"})
    changed = contact(await read(s, f"/companies/{company}"), made["id"])
    assert (changed["email"], changed["email_generated"]) == ("ivan@example.com", False)


async def test_a_removed_contact_is_erased_from_the_log_and_the_read_models(
    stack: Stack,
) -> None:
    s = stack
    company = await new_company(s)
    contacts = f"/companies/{company}/contacts"
    tag = uuid.uuid4().hex[:10]
    name, email, phone = f"Erasable {tag}", f"erasable.{tag}@example.com", "+1 555 0100"
    messenger_id = f"erasable_{tag}"
    doomed = await command(
        s,
        "POST",
        contacts,
        {
            "name": name,
            "email": email,
            "phone": phone,
            "messenger": "tg",
            "messenger_id": messenger_id,
        },
        201,
    )
    await command(s, "PATCH", f"{contacts}/{doomed['id']}", {"name": f"{name} Jr"})
    kept = await command(
        s, "POST", contacts, {"name": f"Kept {tag}", "email": f"kept.{tag}@example.com"}, 201
    )

    secrets = (name, email, email.lower(), messenger_id, tag)

    async def raw_log() -> str:
        events = await log_until(s, s.last)
        return "\n".join(orjson.dumps(e.data).decode() for e in events)

    # Sealed from the start: the store never held them in clear ...
    log = await raw_log()
    assert not [secret for secret in secrets if secret in log]
    [added] = [
        e
        for e in await s.store.read_stream(f"company-{company}")
        if e.type == "ContactAdded" and e.data["contact_id"] == doomed["id"]
    ]
    assert is_sealed(added.data["name"]) and is_sealed(added.data["email"])
    # ... and a fresh key ring (no cache) still opens them while the key exists.
    async with key_ring(s.url) as fresh:
        opened = await fresh.open(added)
        assert isinstance(opened, ContactAdded)
        assert (opened.name, opened.email) == (name, email)

    removed = await command(s, "DELETE", f"{contacts}/{doomed['id']}")
    assert removed["id"] == doomed["id"]
    shown = await read(s, f"/companies/{company}")
    assert [c["id"] for c in shown["contacts"]] == [kept["id"]]
    assert name not in orjson.dumps(shown).decode() and email not in orjson.dumps(shown).decode()
    again = await s.http.delete(f"{contacts}/{doomed['id']}", headers=s.admin)
    assert again.status_code == 404

    # The log still holds only ciphertext, and nothing opens it any more.
    log = await raw_log()
    for secret in (name, email, messenger_id, phone):
        assert secret not in log
    async with key_ring(s.url) as fresh:
        for event in await s.store.read_stream(f"company-{company}"):
            if event.data.get("contact_id") == doomed["id"]:
                opened = await fresh.open(event)
                for personal in ("name", "email", "phone", "messenger_id"):
                    assert getattr(opened, personal, None) is None, (event.type, personal)

    # A read model rebuilt from the events alone, in another database holding the
    # keys the service holds now, shows nothing of it, and the kept contact in clear.
    assert s.runtime.db is not None
    async with s.runtime.db.engine.connect() as conn:
        key_rows = [dict(r._mapping) for r in await conn.execute(select(shredding.subject_keys))]
    async with fresh_database() as other:
        rebuilt_db = await ReadModelDB.open(other)
        try:
            await rebuilt_db.create_tables(shredding.metadata)
            async with rebuilt_db.transaction() as conn:
                await conn.execute(shredding.subject_keys.insert(), key_rows)
            await log_until(s, s.last)  # everything written is visible to the replay
            await ProjectionRunner(s.store, rebuilt_db, CompanyDirectory()).rebuild()
            async with rebuilt_db.engine.connect() as conn:
                rows = {
                    table.name: [tuple(r) for r in await conn.execute(select(table))]
                    for table in (companies, company_members, company_contacts, company_equipment)
                }
        finally:
            await rebuilt_db.close()
    everything = repr(rows)
    for secret in (name, email, messenger_id, doomed["id"]):
        assert secret not in everything
    assert f"kept.{tag}@example.com" in everything and f"Kept {tag}" in everything
