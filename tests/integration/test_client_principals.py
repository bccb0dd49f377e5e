"""Client principals: the clients service's adapter against a served identity, over real HTTP.

PostgreSQL and the broker are real; the adapter is the one the clients service
uses (``IdentityHttp``), so credential handover, the error mapping, login at
``/auth/login``, disabling, erasure and impersonation are tested end to end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI

from services.clients.adapters.identity_http import IdentityHttp
from services.identity.app.handlers import ADMIN_ID
from services.identity.service import SPEC
from shared.domain.events import RecordedEvent
from shared.http.internal import issue_service_token
from shared.runtime.service import ServiceRuntime, create_app
from shared.runtime.settings import ServiceSettings
from tests.http_util import serving
from tests.kafka_util import read_topic
from tests.support.keys import service_key

ADMIN_PASSWORD = "admin-password-for-tests"


@dataclass
class Served:
    http: httpx.AsyncClient
    identity: IdentityHttp
    runtime: ServiceRuntime


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
        var_dir=str(tmp_path / "var"),
    )
    return lambda: create_app(SPEC, settings)


@pytest.fixture
async def served(make_identity: Callable[[], FastAPI]) -> AsyncIterator[Served]:
    app = make_identity()
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        yield Served(http, IdentityHttp(base, service_key("clients")), app.state.runtime)


async def login(http: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await http.post("/auth/login", json={"login": name, "password": password})


async def session(http: httpx.AsyncClient, name: str, password: str) -> dict[str, str]:
    answer = await login(http, name, password)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def session_id(headers: dict[str, str]) -> str:
    token = headers["Authorization"].removeprefix("Bearer ")
    return str(jwt.decode(token, options={"verify_signature": False})["sid"])


def code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


async def test_a_registered_client_logs_in_at_the_same_endpoint(served: Served) -> None:
    http = served.http
    await served.identity.register("c-1", "Client.One", "client-one-password")
    answer = await login(http, "client.one", "client-one-password")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["principal"] == {"id": "c-1", "kind": "client"}
    assert body["token_type"] == "bearer"
    me = await http.get("/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": "c-1",
        "kind": "client",
        "login": "client.one",
        "full_access": False,
        "departments": [],
        "permissions": [],
        "impersonator_id": None,
        "company_id": None,
        "company_manager": False,
    }
    # Staff /me is as it was, plus who impersonates (nobody).
    admin = (await http.get("/me", headers=await session(http, "admin", ADMIN_PASSWORD))).json()
    assert admin["kind"] == "staff" and admin["impersonator_id"] is None
    assert "company_id" not in admin


async def test_handover_errors_come_back_typed(served: Served) -> None:
    from shared.domain.aggregate import Conflict, DomainError, NotFound

    identity = served.identity
    with pytest.raises(Conflict) as taken:
        await identity.register("c-1", "ADMIN", "a-good-password")
    assert taken.value.code == "duplicate_login"
    with pytest.raises(DomainError) as weak:
        await identity.register("c-1", "weakling", "short")
    assert weak.value.field == "password" and "short" not in str(weak.value)
    with pytest.raises(DomainError) as spaced:
        await identity.register("c-1", "has space", "a-good-password")
    assert spaced.value.field == "login"
    await identity.register("c-1", "first", "a-good-password")
    with pytest.raises(Conflict) as again:
        await identity.register("c-1", "second", "a-good-password")
    assert again.value.code == "duplicate_principal"
    with pytest.raises(Conflict) as client_login:
        await identity.register("c-2", "FIRST", "a-good-password")
    assert client_login.value.code == "duplicate_login"
    # A staff member cannot take a client's login either.
    admin = await session(served.http, "admin", ADMIN_PASSWORD)
    staff = await served.http.post(
        "/staff",
        json={"login": "first", "password": "first-password", "full_name": {"en": "First"}},
        headers=admin,
    )
    assert staff.status_code == 409 and code(staff) == "duplicate_login"
    for call in (
        identity.update("nobody", disabled=True),
        identity.change_password("nobody", "a-good-password"),
        identity.remove("nobody"),
        identity.impersonate("nobody", ADMIN_ID, "some-session"),
    ):
        with pytest.raises(NotFound):
            await call
    # The failed registrations left nothing behind: c-2 can still be registered.
    await identity.register("c-2", "second", "a-good-password")


async def test_the_internal_api_needs_a_service_token(served: Served) -> None:
    http = served.http
    await served.identity.register("c-1", "client-one", "client-one-password")
    client = await session(http, "client-one", "client-one-password")
    admin = await session(http, "admin", ADMIN_PASSWORD)
    body = {"client_id": "c-9", "login": "intruder", "password": "intruder-password"}
    for headers in ({}, admin, client, {"Authorization": "Bearer not-a-token"}):
        refused = await http.post("/internal/client-principals", json=body, headers=headers)
        assert refused.status_code == 401, headers
        assert code(refused) == "invalid_service_token"
    # Another service's valid token (the notifier's own key): this route accepts only clients.
    notifier = issue_service_token(service_key("notifier"), "notifier")
    refused = await http.post(
        "/internal/client-principals", json=body, headers={"Authorization": f"Bearer {notifier}"}
    )
    assert refused.status_code == 403 and code(refused) == "service_not_allowed"
    # The notifier's name on a token signed with the clients service's key: not the notifier.
    impostor = issue_service_token(service_key("clients"), "notifier")
    refused = await http.post(
        "/internal/client-principals", json=body, headers={"Authorization": f"Bearer {impostor}"}
    )
    assert refused.status_code == 401 and code(refused) == "invalid_service_token"
    # A service token does not open the staff endpoints, nor /me.
    service = {"Authorization": f"Bearer {issue_service_token(service_key('clients'), 'clients')}"}
    for path in ("/me", "/staff"):
        assert (await http.get(path, headers=service)).status_code == 401
    accepted = await http.post("/internal/client-principals", json=body, headers=service)
    assert accepted.status_code == 201
    assert set(accepted.json()) == {"id", "version", "position"}


async def test_a_client_token_cannot_call_staff_endpoints(served: Served) -> None:
    http = served.http
    await served.identity.register("c-1", "client-one", "client-one-password")
    client = await session(http, "client-one", "client-one-password")
    for method, path in [("GET", "/staff"), ("POST", "/staff"), ("GET", f"/staff/{ADMIN_ID}")]:
        json = {"login": "x", "password": "xxxxxxxxx", "full_name": {"en": "X"}}
        refused = await http.request(method, path, headers=client, json=json)
        assert refused.status_code == 403, (path, refused.text)


async def test_disabling_ends_sessions_and_refuses_login(served: Served) -> None:
    http, identity = served.http, served.identity
    await identity.register("c-1", "client-one", "client-one-password")
    client = await session(http, "client-one", "client-one-password")
    await identity.update("c-1", company_id="company-7", company_manager=True)
    me = (await http.get("/me", headers=client)).json()
    assert (me["company_id"], me["company_manager"]) == ("company-7", True)

    await identity.update("c-1", disabled=True)
    refused = await http.get("/me", headers=client)
    assert refused.status_code == 401
    again = await login(http, "client-one", "client-one-password")
    assert again.status_code == 401 and code(again) == "principal_disabled"
    from shared.domain.aggregate import Conflict

    with pytest.raises(Conflict) as disabled:
        await identity.impersonate("c-1", ADMIN_ID, "any-session")
    assert disabled.value.code == "principal_disabled"

    await identity.update("c-1", disabled=False, company_id=None)
    back = await session(http, "client-one", "client-one-password")
    me = (await http.get("/me", headers=back)).json()
    assert me["company_id"] is None and me["company_manager"] is True
    # The old session stays ended: enabling does not revive it.
    refused = await http.get("/me", headers=client)
    assert refused.status_code == 401 and code(refused) == "session_ended"

    await identity.change_password("c-1", "a-new-password-1")
    assert (await login(http, "client-one", "client-one-password")).status_code == 401
    assert (await login(http, "client-one", "a-new-password-1")).status_code == 200


async def test_removal_frees_the_login_and_ends_every_session(served: Served) -> None:
    http, identity = served.http, served.identity
    await identity.register("c-1", "client-one", "client-one-password")
    client = await session(http, "client-one", "client-one-password")
    await identity.remove("c-1")
    assert (await http.get("/me", headers=client)).status_code == 401
    assert (await login(http, "client-one", "client-one-password")).status_code == 401
    await identity.remove("c-1")  # repeating an erasure is harmless
    from shared.domain.aggregate import NotFound

    with pytest.raises(NotFound):
        await identity.update("c-1", disabled=False)
    await identity.register("c-2", "client-one", "another-password")
    me = await http.get("/me", headers=await session(http, "client-one", "another-password"))
    assert me.json()["id"] == "c-2"


async def test_impersonation_names_both_and_hands_back_to_the_staff_member(
    served: Served,
) -> None:
    http, identity = served.http, served.identity
    await identity.register("c-1", "client-one", "client-one-password")
    admin = await session(http, "admin", ADMIN_PASSWORD)
    taken = await identity.impersonate("c-1", ADMIN_ID, session_id(admin))
    assert (taken.client_id, taken.impersonator_id) == ("c-1", ADMIN_ID)
    as_client = {"Authorization": f"Bearer {taken.access_token}"}
    me = (await http.get("/me", headers=as_client)).json()
    assert (me["id"], me["kind"], me["impersonator_id"]) == ("c-1", "client", ADMIN_ID)
    assert me["login"] == "client-one"

    store = served.runtime.store
    assert store is not None
    [started] = await store.read_stream(f"session-{taken.session_id}")
    assert started.type == "SessionStarted"
    assert (started.actor.id, started.actor.kind, started.actor.impersonator_id) == (
        "c-1",
        "client",
        ADMIN_ID,
    )
    assert started.data["impersonator_id"] == ADMIN_ID

    ended = await http.post("/auth/logout", headers=as_client)
    assert ended.status_code == 200, ended.text
    assert ended.json() == {"returned_to": {"id": ADMIN_ID, "kind": "staff"}}
    assert (await http.get("/me", headers=as_client)).status_code == 401
    assert (await http.get("/me", headers=admin)).status_code == 200
    [_, end] = await store.read_stream(f"session-{taken.session_id}")
    assert end.data["reason"] == "impersonation_ended"
    assert (end.actor.id, end.actor.impersonator_id) == ("c-1", ADMIN_ID)

    # Ending the staff member's own session ends what they started from it.
    again = await identity.impersonate("c-1", ADMIN_ID, session_id(admin))
    as_client = {"Authorization": f"Bearer {again.access_token}"}
    assert (await http.get("/me", headers=as_client)).status_code == 200
    assert (await http.post("/auth/logout", headers=admin)).status_code == 204
    assert (await http.get("/me", headers=as_client)).status_code == 401
    from shared.domain.aggregate import Conflict

    with pytest.raises(Conflict) as stale:
        await identity.impersonate("c-1", ADMIN_ID, session_id(admin))
    assert stale.value.code == "impersonator_session_ended"


async def test_the_client_group_can_be_denied_login(
    make_identity: Callable[[], FastAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGIN_DENIED_GROUPS", '["client"]')
    async with serving(make_identity()) as base, httpx.AsyncClient(base_url=base) as http:
        await IdentityHttp(base, service_key("clients")).register(
            "c-1", "client-one", "client-one-password"
        )
        refused = await login(http, "client-one", "client-one-password")
        assert refused.status_code == 403 and code(refused) == "group_denied"
        await session(http, "admin", ADMIN_PASSWORD)  # staff still may


async def test_no_client_login_or_password_reaches_the_topic(
    served: Served, kafka_bootstrap: str, topic_prefix: str
) -> None:
    http, identity = served.http, served.identity
    secrets = {
        "c-1": ("client-one-login", "client-one-password"),
        "c-2": ("client-two-login", "client-two-password"),
    }
    for client_id, (name, password) in secrets.items():
        await identity.register(client_id, name, password)
        await session(http, name, password)
        assert (await login(http, name, "a-wrong-password")).status_code == 401
    admin = await session(http, "admin", ADMIN_PASSWORD)
    impersonation = await identity.impersonate("c-1", ADMIN_ID, session_id(admin))
    await http.post(
        "/auth/logout", headers={"Authorization": f"Bearer {impersonation.access_token}"}
    )
    await identity.update("c-1", disabled=True, company_id="company-1")
    assert (await login(http, "client-one-login", "client-one-password")).status_code == 401
    await identity.change_password("c-2", "client-two-new-password")
    await identity.remove("c-2")
    # Logins of a deleted client, typed again, are unknown logins: not on the topic either.
    assert (await login(http, "client-two-login", "client-two-new-password")).status_code == 401

    store, relay = served.runtime.store, served.runtime.relay
    assert store is not None and relay is not None
    everything = await store.read_all(0, 100_000)
    deadline = time.monotonic() + 30
    while relay.position < everything[-1].position:
        assert time.monotonic() < deadline, "the relay did not catch up"
        await asyncio.sleep(0.1)
    messages = await read_topic(
        kafka_bootstrap, f"{topic_prefix}identity.events", expect=len(everything)
    )
    assert len(messages) >= len(everything)
    types = {RecordedEvent.from_json(m.value).type for m in messages}
    assert {
        "ClientPrincipalRegistered",
        "ClientAccessChanged",
        "ClientPrincipalRemoved",
        "SessionStarted",
        "LoginSucceeded",
        "LoginFailed",
        "PasswordChanged",
    } <= types
    published = b"\n".join(m.value + b"\n" + (m.key or b"") for m in messages).lower()
    for name, password in [*secrets.values(), ("", "client-two-new-password")]:
        if name:
            assert name.encode() not in published, name
        assert password.encode() not in published
    assert b"$argon2" not in published
