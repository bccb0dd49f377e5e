"""The identity service over real HTTP, with PostgreSQL and the broker.

Departments' side is played by a store and relay publishing department facts
to ``departments.events``; everything else is the real identity service.
Addresses are set with X-Forwarded-For, believed from 127.0.0.1 in these tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.identity.service import SPEC
from shared.access.control import DepartmentRightsChanged
from shared.access.control import registry as access_registry
from shared.domain.events import NewEvent, RecordedEvent
from shared.eventstore import EventStore, open_event_store
from shared.runtime.service import create_app
from shared.runtime.settings import ServiceSettings
from tests.http_util import eventually, serving
from tests.kafka_util import read_topic
from tests.support.publishing import publishing_context

ADMIN_PASSWORD = "admin-password-for-tests"
SALES = str(uuid.uuid4())
SUPPORT = str(uuid.uuid4())


class Departments:
    """Stands in for the departments service: publishes department facts."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def created(self, department_id: str) -> None:
        await self.store.append(
            f"department-{department_id}",
            [NewEvent(type="DepartmentCreated", data={"department_id": department_id})],
        )

    async def rights(self, department_id: str, rights: list[str]) -> None:
        fact = DepartmentRightsChanged(department_id=department_id, rights=rights)
        await self.store.append(f"department-{department_id}", [access_registry.encode(fact)])


@pytest.fixture
async def departments(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> AsyncIterator[Departments]:
    async with publishing_context("departments", tmp_path, kafka_bootstrap, topic_prefix) as store:
        fake = Departments(store)
        await fake.created(SALES)
        await fake.created(SUPPORT)
        await fake.rights(SUPPORT, ["tickets.view", "tickets.reply"])
        yield fake


@pytest.fixture
def make_identity(
    postgres_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[], FastAPI]:
    monkeypatch.setenv("ADMIN_PASSWORD", ADMIN_PASSWORD)
    settings = ServiceSettings(
        event_store_url=postgres_url,
        read_model_url=postgres_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
        trusted_proxies=["127.0.0.1/32"],
        var_dir=str(tmp_path / "var"),
    )
    return lambda: create_app(SPEC, settings)


@pytest.fixture
async def http(
    make_identity: Callable[[], FastAPI], departments: Departments
) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(make_identity()) as base, httpx.AsyncClient(base_url=base) as client:
        # Wait until identity has learnt the departments from their topic.
        admin = await login(client, "admin", ADMIN_PASSWORD)
        await eventually(
            lambda: client.post("/staff", json=staff_body("probe", [SUPPORT]), headers=admin),
            lambda r: r.status_code == 201,
        )
        yield client


async def login(
    client: httpx.AsyncClient, name: str, password: str, ip: str = "127.0.0.1"
) -> dict[str, str]:
    answer = await client.post(
        "/auth/login",
        json={"login": name, "password": password},
        headers={"X-Forwarded-For": ip},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer" and body["principal"]["kind"] == "staff"
    return {"Authorization": f"Bearer {body['access_token']}", "X-Forwarded-For": ip}


def staff_body(name: str, departments: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "login": name,
        "password": f"{name}-password",
        "full_name": {"en": name.title(), "ru": name},
        "email": f"{name}@example.com",
        "phone": "+7 900 000-00-00",
        "departments": departments,
        **extra,
    }


async def add(client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]) -> str:
    answer = await client.post("/staff", json=body, headers=admin)
    assert answer.status_code == 201, answer.text
    assert set(answer.json()) == {"id", "version", "position"}
    staff_id = str(answer.json()["id"])
    # Read-your-writes: later reads of the staff list and cards see the new member.
    caught_up = await client.get(
        f"/staff/{staff_id}", params={"min_position": answer.json()["position"]}, headers=admin
    )
    assert caught_up.status_code == 200
    return staff_id


async def test_admin_exists_from_the_first_start_with_full_access(http: httpx.AsyncClient) -> None:
    admin = await login(http, "admin", ADMIN_PASSWORD)
    me = (await http.get("/me", headers=admin)).json()
    assert me["login"] == "admin" and me["full_access"] is True and me["kind"] == "staff"
    assert "finance.invoices" in me["permissions"] and "clients.delete" in me["permissions"]
    catalogue = (await http.get("/rights/catalogue", headers=admin)).json()
    assert {section["section"] for section in catalogue} >= {
        "staff",
        "clients",
        "tickets",
        "finance",
    }


async def test_rights_come_from_departments_and_grants_with_their_sources(
    http: httpx.AsyncClient, departments: Departments
) -> None:
    admin = await login(http, "admin", ADMIN_PASSWORD)
    alice = await add(http, admin, staff_body("alice", [SUPPORT, SALES]))
    answer = await http.post(
        f"/staff/{alice}/rights", json={"right": "clients.create"}, headers=admin
    )
    assert answer.status_code == 201
    rights = {
        r["right"]: r["sources"]
        for r in (
            await http.get(
                f"/staff/{alice}/rights",
                params={"min_position": answer.json()["position"]},
                headers=admin,
            )
        ).json()
    }
    assert rights == {
        "clients.create": ["individual"],
        "tickets.reply": [f"department:{SUPPORT}"],
        "tickets.view": [f"department:{SUPPORT}"],
    }
    # Only a department gives tickets.reply: it cannot be removed from her.
    inherited = await http.delete(f"/staff/{alice}/rights/tickets.reply", headers=admin)
    assert inherited.status_code == 409 and inherited.json()["error"]["code"] == "inherited_right"
    revoked = await http.delete(f"/staff/{alice}/rights/clients.create", headers=admin)
    assert revoked.status_code == 200

    # A department change reaches her effective rights (and her own /me).
    await departments.rights(SALES, ["clients.view"])
    alice_session = await login(http, "alice", "alice-password")
    me = await eventually(
        lambda: http.get("/me", headers=alice_session),
        lambda r: "clients.view" in r.json().get("permissions", []),
    )
    assert me.json()["permissions"] == ["clients.view", "tickets.reply", "tickets.view"]
    assert sorted(me.json()["departments"]) == sorted([SUPPORT, SALES])


async def test_every_endpoint_checks_its_right(http: httpx.AsyncClient) -> None:
    admin = await login(http, "admin", ADMIN_PASSWORD)
    bob = await add(http, admin, staff_body("bob", []))
    as_bob = await login(http, "bob", "bob-password")
    calls = [
        ("POST", "/staff", staff_body("carol", []), "staff.create"),
        ("GET", "/staff", None, "staff.view"),
        ("GET", f"/staff/{bob}", None, "staff.view"),
        ("PATCH", f"/staff/{bob}", {"phone": "+7 900 111-11-11"}, "staff.edit"),
        ("GET", f"/staff/{bob}/rights", None, "staff.view"),
        ("POST", f"/staff/{bob}/rights", {"right": "clients"}, "staff.rights"),
    ]
    for method, path, body, right in calls:
        assert (await http.request(method, path, json=body)).status_code == 401, path
        refused = await http.request(method, path, json=body, headers=as_bob)
        assert refused.status_code == 403, path
        assert right in refused.json()["error"]["message"]
    # After a grant, the same call goes through.
    await http.post(f"/staff/{bob}/rights", json={"right": "staff.view"}, headers=admin)
    await eventually(lambda: http.get("/staff", headers=as_bob), lambda r: r.status_code == 200)
    # And after the revocation it is refused again.
    await http.delete(f"/staff/{bob}/rights/staff.view", headers=admin)
    await eventually(lambda: http.get("/staff", headers=as_bob), lambda r: r.status_code == 403)


async def test_bad_input_is_a_4xx_naming_the_field_and_writes_nothing(
    http: httpx.AsyncClient,
) -> None:
    admin = await login(http, "admin", ADMIN_PASSWORD)

    async def refused(body: Any, field: str, status: int = 422, **kw: Any) -> None:
        answer = await http.post("/staff", headers=admin, **({"json": body} | kw))
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert field in error["message"] or field in str(error.get("fields")), error

    body = staff_body("dave", [])
    await refused({k: v for k, v in body.items() if k != "login"}, "body.login")
    await refused({**body, "full_access": "maybe"}, "body.full_access")
    await refused({**body, "email": "not-an-email"}, "body.email")
    await refused({**body, "departments": ["no-such-department"]}, "departments.0")
    await refused({**body, "ip_policy": {"mode": "list", "allowed": ["10.0.0.0/33"]}}, "ip_policy")
    await refused({**body, "surprise": 1}, "body.surprise")
    malformed = await http.post(
        "/staff", content=b"{not json", headers={**admin, "content-type": "application/json"}
    )
    assert malformed.status_code == 422
    added = await http.post("/staff", json=body, headers=admin)
    assert added.status_code == 201
    duplicate = await http.post("/staff", json={**body, "login": "DAVE"}, headers=admin)
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "duplicate_login"
    page = (
        await http.get(
            "/staff",
            params={"login": "dave", "min_position": added.json()["position"]},
            headers=admin,
        )
    ).json()
    assert page["total"] == 1


async def test_lock_out_after_five_failures(http: httpx.AsyncClient) -> None:
    for _ in range(5):
        wrong = await http.post("/auth/login", json={"login": "admin", "password": "wrong!"})
        assert wrong.status_code == 401
    locked = await http.post("/auth/login", json={"login": "admin", "password": ADMIN_PASSWORD})
    assert locked.status_code == 429
    assert 0 < int(locked.headers["retry-after"]) <= 15 * 60 + 1
    assert ADMIN_PASSWORD not in locked.text


@pytest.mark.parametrize(
    ("allowed", "address", "status"),
    [
        (["10.0.0.0/8"], "10.20.30.40", 200),
        (["10.0.0.0/8"], "11.0.0.1", 403),
        (["2001:db8::/32"], "2001:db8::7", 200),
        (["2001:db8::/32"], "2001:db9::7", 403),
        (["192.0.2.10"], "192.0.2.10", 200),
    ],
)
async def test_ip_allow_list_at_login(
    http: httpx.AsyncClient, allowed: list[str], address: str, status: int
) -> None:
    admin = await login(http, "admin", ADMIN_PASSWORD)
    name = f"ip{uuid.uuid4().hex[:6]}"
    await add(http, admin, staff_body(name, [], ip_policy={"mode": "list", "allowed": allowed}))
    answer = await eventually(
        lambda: http.post(
            "/auth/login",
            json={"login": name, "password": f"{name}-password"},
            headers={"X-Forwarded-For": address},
        ),
        lambda r: r.status_code != 401,
    )
    assert answer.status_code == status, answer.text


async def test_a_bound_session_is_refused_from_another_address(http: httpx.AsyncClient) -> None:
    admin = await login(http, "admin", ADMIN_PASSWORD)
    await add(http, admin, staff_body("erin", [], bind_session_to_ip=True))
    erin = await login(http, "erin", "erin-password", ip="203.0.113.5")
    assert (await http.get("/me", headers=erin)).status_code == 200
    moved = await http.get("/me", headers={**erin, "X-Forwarded-For": "203.0.113.6"})
    assert moved.status_code == 401 and moved.json()["error"]["code"] == "session_ip_mismatch"


async def test_logout_and_disable_end_sessions(http: httpx.AsyncClient) -> None:
    admin = await login(http, "admin", ADMIN_PASSWORD)
    frank = await add(http, admin, staff_body("frank", []))
    first = await login(http, "frank", "frank-password")
    second = await login(http, "frank", "frank-password")
    assert (await http.post("/auth/logout", headers=first)).status_code == 204
    assert (await http.get("/me", headers=first)).status_code == 401
    assert (await http.get("/me", headers=second)).status_code == 200
    assert (await http.delete(f"/staff/{frank}", headers=admin)).status_code == 200
    assert (await http.get("/me", headers=second)).status_code == 401
    again = await http.post("/auth/login", json={"login": "frank", "password": "frank-password"})
    assert again.status_code == 401


async def test_no_secret_reaches_the_topic(
    http: httpx.AsyncClient, kafka_bootstrap: str, topic_prefix: str
) -> None:
    admin = await login(http, "admin", ADMIN_PASSWORD)
    await add(http, admin, staff_body("grace", [SUPPORT]))
    grace = await login(http, "grace", "grace-password")
    await http.post("/auth/login", json={"login": "grace", "password": "a-wrong-password"})
    token = grace["Authorization"].removeprefix("Bearer ")
    messages = await read_topic(kafka_bootstrap, f"{topic_prefix}identity.events", expect=10)
    await asyncio.sleep(1)  # let the relay catch up with the last logins
    messages = await read_topic(
        kafka_bootstrap, f"{topic_prefix}identity.events", expect=len(messages)
    )
    everything = b"\n".join(m.value for m in messages)
    types = {RecordedEvent.from_json(m.value).type for m in messages}
    assert {"StaffAdded", "SessionStarted", "LoginFailed", "StaffAccessChanged"} <= types
    for secret in (ADMIN_PASSWORD, "grace-password", "a-wrong-password", token):
        assert secret.encode() not in everything
    assert b"$argon2" not in everything


def image(size: tuple[int, int] = (80, 80), kind: str = "PNG", padding: int = 0) -> bytes:
    from io import BytesIO

    from PIL import Image, PngImagePlugin

    out = BytesIO()
    picture = Image.new("RGB", size, (200, 80, 40))
    if padding:  # a text chunk makes a valid image as large as we like
        info = PngImagePlugin.PngInfo()
        info.add_text("padding", "x" * padding)
        picture.save(out, kind, pnginfo=info)
    else:
        picture.save(out, kind)
    return out.getvalue()


async def test_avatars_are_checked_and_kept_outside_the_log(http: httpx.AsyncClient) -> None:
    admin = await login(http, "admin", ADMIN_PASSWORD)
    hank = await add(http, admin, staff_body("hank", []))
    as_hank = await login(http, "hank", "hank-password")

    async def upload(data: bytes, name: str, headers: dict[str, str] = as_hank) -> httpx.Response:
        return await http.put(
            f"/staff/{hank}/avatar", files={"avatar": (name, data)}, headers=headers
        )

    for data, name, hint in [
        (image((81, 80)), "a.png", "80x80"),
        (image(kind="BMP"), "a.bmp", "png, jpg"),
        (image(kind="BMP"), "a.png", "png, jpg or gif"),
        (image(padding=70_000), "a.png", "64 KB"),
        (b"GIF89a but not really", "a.gif", "readable"),
        (b"", "a.png", "empty"),
    ]:
        refused = await upload(data, name)
        assert refused.status_code == 422, (name, refused.text)
        assert refused.json()["error"]["field"] == "avatar" and hint in refused.text
    card = (await http.get(f"/staff/{hank}", headers=admin)).json()
    assert card["avatar"] is None

    for kind, name in [("PNG", "me.png"), ("JPEG", "me.jpg"), ("GIF", "me.gif")]:
        picture = image(kind=kind)
        answer = await upload(picture, name)
        assert answer.status_code == 200, answer.text
        served = await http.get(
            f"/staff/{hank}/avatar",
            params={"min_position": answer.json()["position"]},
            headers=as_hank,
        )
        assert served.content == picture and served.headers["content-type"].startswith("image/")
    other = await add(http, admin, staff_body("ivy", []))
    stranger = await http.put(
        f"/staff/{other}/avatar", files={"avatar": ("x.png", image())}, headers=as_hank
    )
    assert stranger.status_code == 403


async def test_a_denied_user_group_cannot_log_in(
    make_identity: Callable[[], FastAPI],
    departments: Departments,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serving(make_identity()) as base, httpx.AsyncClient(base_url=base) as client:
        admin = await login(client, "admin", ADMIN_PASSWORD)
        await add(client, admin, staff_body("jack", []))
    monkeypatch.setenv("LOGIN_DENIED_GROUPS", '["staff"]')
    async with serving(make_identity()) as base, httpx.AsyncClient(base_url=base) as client:
        refused = await client.post(
            "/auth/login", json={"login": "jack", "password": "jack-password"}
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "group_denied"
        await login(client, "admin", ADMIN_PASSWORD)  # the admin group still may


async def test_a_lock_out_ends_and_the_count_starts_again(
    make_identity: Callable[[], FastAPI],
    departments: Departments,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGIN_LOCK_SECONDS", "2")
    async with serving(make_identity()) as base, httpx.AsyncClient(base_url=base) as client:

        async def attempt(password: str) -> int:
            answer = await client.post("/auth/login", json={"login": "admin", "password": password})
            return answer.status_code

        assert [await attempt("wrong!") for _ in range(5)] == [401] * 5
        assert await attempt(ADMIN_PASSWORD) == 429
        await asyncio.sleep(2.5)
        assert await attempt(ADMIN_PASSWORD) == 200  # the lock has ended
        # A success resets the count: four more failures do not lock again.
        assert [await attempt("wrong!") for _ in range(4)] == [401] * 4
        assert await attempt(ADMIN_PASSWORD) == 200


async def test_the_functions_that_manage_rights_are_held_by_full_access_staff_only(
    http: httpx.AsyncClient, departments: Departments, postgres_url: str
) -> None:
    admin = await login(http, "admin", ADMIN_PASSWORD)
    nick = await add(http, admin, staff_body("nick", [SALES]))
    # Nobody grants them, full access included: full access is the way to hold them.
    for right in ("staff.rights", "departments.rights"):
        refused = await http.post(f"/staff/{nick}/rights", json={"right": right}, headers=admin)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "full_access_only" and error["field"] == "right", error
    # An older individual grant in nick's stream and an older department fact still
    # list them; the next command recomputes nick's access from both.
    store = await open_event_store(postgres_url)
    try:
        old = NewEvent(type="RightGranted", data={"staff_id": nick, "right": "staff.rights"})
        await store.append(f"staff-{nick}", [old])
    finally:
        await store.close()
    await departments.rights(SALES, ["departments.rights", "staff.rights", "staff.view"])
    granted = await http.post(
        f"/staff/{nick}/rights", json={"right": "clients.view"}, headers=admin
    )
    assert granted.status_code == 201, granted.text
    as_nick = await login(http, "nick", "nick-password")
    me = await eventually(
        lambda: http.get("/me", headers=as_nick),
        lambda r: {"clients.view", "staff.view"} <= set(r.json()["permissions"]),
    )
    assert not {"staff.rights", "departments.rights"} & set(me.json()["permissions"])
    listed = await http.get(f"/staff/{nick}/rights", headers=admin)
    assert {r["right"] for r in listed.json()} == {"clients.view", "staff.view"}
    # Without full access, nick cannot use what the old grant named.
    bob = await add(http, admin, staff_body("bob", []))
    using = await http.post(f"/staff/{bob}/rights", json={"right": "staff.view"}, headers=as_nick)
    assert using.status_code == 403 and "staff.rights" in using.json()["error"]["message"]
    # The old grant may still be taken away, by full-access staff.
    revoked = await http.delete(f"/staff/{nick}/rights/staff.rights", headers=admin)
    assert revoked.status_code == 200, revoked.text


async def test_full_access_staff_may_do_everything_and_only_they_may_give_it(
    http: httpx.AsyncClient,
) -> None:
    admin = await login(http, "admin", ADMIN_PASSWORD)
    await add(http, admin, staff_body("kate", [], full_access=True))
    mike = await add(http, admin, staff_body("mike", [SUPPORT]))
    await http.post(f"/staff/{mike}/rights", json={"right": "staff"}, headers=admin)
    kate = await login(http, "kate", "kate-password")
    me = (await http.get("/me", headers=kate)).json()
    assert me["full_access"] is True and "finance.invoices" in me["permissions"]
    assert (await http.post("/staff", json=staff_body("nina", []), headers=kate)).status_code == 201
    # mike has the whole staff section (one department, one grant) but not full access.
    as_mike = await login(http, "mike", "mike-password")
    await eventually(lambda: http.get("/staff", headers=as_mike), lambda r: r.status_code == 200)
    giving = await http.post(
        "/staff", json=staff_body("oscar", [], full_access=True), headers=as_mike
    )
    assert giving.status_code == 403
    assert (
        await http.post("/staff", json=staff_body("oscar", []), headers=as_mike)
    ).status_code == 201
