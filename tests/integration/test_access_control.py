"""Authorization in a service, fed by identity's topic through the real broker.

Identity's side is played by a store and a relay publishing the access facts,
signed with the run's identity key; the service under test is a real app over
HTTP with a right-protected endpoint. Facts produced onto the topic by anyone
else, and tokens not signed by identity, change nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends, FastAPI

from shared.access.control import IpPolicy, Principal, SessionEnded, StaffAccessChanged, issue_token
from shared.access.control import registry as access_registry
from shared.domain.events import RecordedEvent
from shared.eventstore import EventStore
from shared.http.api import require
from shared.messaging.signatures import sign
from shared.runtime.service import ServiceSpec, create_app
from shared.runtime.settings import ServiceSettings
from tests.http_util import serving
from tests.kafka_util import access_fact_envelope, produce_raw
from tests.support.keys import identity_key
from tests.support.publishing import publishing_context

router = APIRouter()


@router.post("/replies")
async def reply(principal: Principal = Depends(require("tickets.reply"))) -> dict[str, str]:
    return {"by": principal.id}


@router.get("/whoami")
async def whoami(principal: Principal = Depends(require())) -> dict[str, str]:
    return {"id": principal.id}


class Identity:
    """Stands in for the identity service: appends access facts, relays them."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def publish(self, *facts: StaffAccessChanged | SessionEnded) -> None:
        for fact in facts:
            principal = fact.staff_id if isinstance(fact, StaffAccessChanged) else fact.principal_id
            await self.store.append(f"staff-{principal}", [access_registry.encode(fact)])


@pytest.fixture
async def identity(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> AsyncIterator[Identity]:
    async with publishing_context("identity", tmp_path, kafka_bootstrap, topic_prefix) as store:
        yield Identity(store)


@pytest.fixture
def make_app(postgres_url: str, kafka_bootstrap: str, topic_prefix: str) -> Callable[[], FastAPI]:
    """A new app (a new process, as far as the service is concerned) on each call."""
    settings = ServiceSettings(
        event_store_url=postgres_url,
        read_model_url=postgres_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=topic_prefix,
    )
    return lambda: create_app(ServiceSpec(name="tickets", routers=[router]), settings)


@pytest.fixture
def app(make_app: Callable[[], FastAPI]) -> FastAPI:
    return make_app()


def staff(rights: list[str], **changes: object) -> StaffAccessChanged:
    fields: dict[str, object] = {
        "staff_id": "s-1",
        "login": "alice",
        "disabled": False,
        "full_access": False,
        "rights": rights,
        "departments": ["d-1"],
        "ip_policy": IpPolicy(),
        "bind_session_to_ip": False,
    }
    fields.update(changes)
    return StaffAccessChanged.model_validate(fields)


def bearer(session: str = "sess-1", principal: str = "s-1") -> dict[str, str]:
    token = issue_token(
        identity_key(),
        principal_id=principal,
        kind="staff",
        session_id=session,
        lifetime=timedelta(minutes=5),
    )
    return {"Authorization": f"Bearer {token}"}


async def until(http: httpx.AsyncClient, path: str, status: int, headers: dict[str, str]) -> float:
    """Seconds until ``POST``/``GET`` of ``path`` answers ``status`` (fails after 30 s)."""
    started = time.monotonic()
    while True:
        method = http.post if path == "/replies" else http.get
        answer = await method(path, headers=headers)
        if answer.status_code == status:
            return time.monotonic() - started
        assert time.monotonic() - started < 30, f"{path} still answers {answer.status_code}"
        await asyncio.sleep(0.02)


async def test_grant_revoke_and_logout_reach_the_service_through_the_topic(
    identity: Identity, app: FastAPI
) -> None:
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        assert (await http.post("/replies")).status_code == 401
        assert (await http.post("/replies")).json()["error"]["code"] == "unauthorized"

        await identity.publish(staff(rights=["tickets.reply"]))
        await until(http, "/replies", 200, bearer())
        assert (await http.post("/replies", headers=bearer())).json() == {"by": "s-1"}

        await identity.publish(staff(rights=["tickets.view"]))  # tickets.reply revoked
        seconds = await until(http, "/replies", 403, bearer())
        assert seconds < 10
        refused = await http.post("/replies", headers=bearer())
        assert refused.json()["error"] == {
            "code": "forbidden",
            "message": "the right 'tickets.reply' is required",
        }
        assert (await http.get("/whoami", headers=bearer())).json() == {"id": "s-1"}

        await identity.publish(
            SessionEnded(session_id="sess-1", principal_id="s-1", reason="logout")
        )
        await until(http, "/whoami", 401, bearer())
        assert (await http.get("/whoami", headers=bearer("sess-2"))).status_code == 200

        await identity.publish(staff(rights=["tickets.reply"], disabled=True))
        await until(http, "/whoami", 401, bearer("sess-2"))
        answer = await http.get("/whoami", headers=bearer("sess-2"))
        assert answer.json()["error"]["code"] == "principal_disabled"
        assert answer.headers["www-authenticate"] == "Bearer"


async def test_the_access_copy_survives_a_restart(
    identity: Identity, make_app: Callable[[], FastAPI]
) -> None:
    await identity.publish(staff(rights=["tickets.reply"]))
    async with serving(make_app()) as base, httpx.AsyncClient(base_url=base) as http:
        await until(http, "/replies", 200, bearer())
    # A new process: it resumes from the offsets stored beside the rows, so
    # nothing is redelivered; the copy must come back from the table, at once.
    async with serving(make_app()) as base, httpx.AsyncClient(base_url=base) as http:
        assert (await http.post("/replies", headers=bearer())).status_code == 200


async def test_every_replica_sees_every_change_whatever_its_partition(
    identity: Identity, make_app: Callable[[], FastAPI]
) -> None:
    # Six staff members: their facts are keyed by stream, so they spread over the
    # topic's partitions. A consumer group would give each replica only some of them.
    members = [f"s-{i}" for i in range(6)]
    for member in members:
        await identity.publish(staff(rights=["tickets.reply"], staff_id=member))
    async with (
        serving(make_app()) as first,
        serving(make_app()) as second,
        httpx.AsyncClient(base_url=first) as one,
        httpx.AsyncClient(base_url=second) as two,
    ):
        for http in (one, two):
            for member in members:
                await until(http, "/replies", 200, bearer(principal=member))
        for member in members:  # every grant revoked
            await identity.publish(staff(rights=["tickets.view"], staff_id=member))
        for http in (one, two):
            for member in members:
                await until(http, "/replies", 403, bearer(principal=member))
        await identity.publish(staff(rights=["tickets.reply"], staff_id="s-new"))
        for http in (one, two):
            await until(http, "/replies", 200, bearer(principal="s-new"))
    # A replica starting later loads the rows both wrote, and is right at once.
    async with serving(make_app()) as third, httpx.AsyncClient(base_url=third) as http:
        for member in members:
            answer = await http.post("/replies", headers=bearer(principal=member))
            assert answer.status_code == 403, member
        assert (await http.post("/replies", headers=bearer(principal="s-new"))).status_code == 200


def _forged(fact: StaffAccessChanged, version: int) -> RecordedEvent:
    return access_fact_envelope(fact, version, position=10_000 + version)


async def _rejected(http: httpx.AsyncClient) -> int:
    count: int = (await http.get("/ready")).json()["signed_facts_rejected"]
    return count


async def test_a_forged_access_fact_on_the_topic_has_no_effect_and_is_reported(
    identity: Identity, app: FastAPI, kafka_bootstrap: str, topic_prefix: str
) -> None:
    await identity.publish(staff(rights=["tickets.view"]))
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        await until(http, "/whoami", 200, bearer())
        assert (await http.post("/replies", headers=bearer())).status_code == 403
        admin = staff(rights=["tickets.reply"], full_access=True)
        unsigned = _forged(admin, 99)
        by_another_key = sign(Ed25519PrivateKey.generate(), _forged(admin, 100))
        # A real fact of identity's, its signature kept, its rights changed.
        real = sign(identity_key(), _forged(staff(rights=["tickets.view"]), 101))
        tampered = real._replace(data={**real.data, "full_access": True})
        topic = f"{topic_prefix}identity.events"
        await produce_raw(kafka_bootstrap, topic, unsigned, by_another_key, tampered)

        started = time.monotonic()
        while await _rejected(http) < 3:
            assert time.monotonic() - started < 30, "the forged facts were not reported"
            await asyncio.sleep(0.05)
        ready = (await http.get("/ready")).json()
        assert ready["signed_facts_rejected"] == 3
        assert "identity fact(s) ignored" in ready["problems"]["signed_facts"]
        metrics = (await http.get("/metrics")).text
        assert 'signed_facts_rejected_total{reason="unsigned",type="StaffAccessChanged"}' in (
            metrics
        )
        answer = await http.post("/replies", headers=bearer())
        assert answer.status_code == 403, "a forged fact granted a right"

        # Identity's next real fact still applies: the forgeries' high versions left no trace
        # (one taken would hold full access and make the copy ignore this lower version).
        await identity.publish(staff(rights=["tickets.reply"]))
        await until(http, "/replies", 200, bearer())
        held = app.state.runtime.access.by_principal["s-1"]
        assert (held.full_access, set(held.rights)) == (False, {"tickets.reply"})


async def test_user_tokens_not_signed_by_identity_are_refused(
    identity: Identity, app: FastAPI
) -> None:
    await identity.publish(staff(rights=["tickets.reply"], full_access=True))
    claims = {"sub": "s-1", "knd": "staff", "sid": "sess-1", "exp": int(time.time()) + 300}
    another_key = jwt.encode(claims, Ed25519PrivateKey.generate(), "EdDSA")
    old_secret = jwt.encode(claims, "integration-secret-" * 3, "HS256")  # JWT_SECRET of old
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        await until(http, "/whoami", 200, bearer())
        for token in (another_key, old_secret):
            answer = await http.get("/whoami", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "invalid_token"
