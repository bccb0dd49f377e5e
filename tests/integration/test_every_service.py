"""What every service keeps, checked on all five at once (issue 17): the real identity,
departments, clients, tickets and notifier of ``test_notifier`` (its module-scoped
stack, started again for this module), on PostgreSQL and the broker.

* A ``StaffAccessChanged`` produced straight onto ``identity.events`` by anyone
  who can reach the broker (unsigned, signed with another key, or identity's
  signature over a fact changed afterwards) changes nobody's access in any
  service, identity's own copy included; each service reports it in ``/ready``;
  identity's next real fact still applies everywhere.
* A 2 MB body is refused with 413 ``body_too_large`` by every service.
* A method a path does not take is 405 with ``Allow`` on every service.

The kernel's tests hold each mechanism in one service; these hold that no
service is left out of it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.access.control import IpPolicy, StaffAccessChanged
from shared.domain.events import RecordedEvent
from shared.messaging.signatures import sign
from tests.http_util import eventually
from tests.integration.test_notifier import Stack, login, stack
from tests.kafka_util import access_fact_envelope, produce_raw
from tests.support.keys import identity_key

__all__ = ["stack"]  # the five services of test_notifier, run again for this module

Headers = dict[str, str]

# Each service's route a member without rights is refused, and the right that opens it.
GUARDED = {
    "identity": ("/staff", "staff.view"),
    "departments": ("/departments", "departments.view"),
    "clients": ("/clients", "clients.view"),
    "tickets": ("/tickets", "tickets.view"),
    "notifier": ("/timers", "notifier.timers"),
}


def services(s: Stack) -> dict[str, httpx.AsyncClient]:
    return {
        "identity": s.identity,
        "departments": s.departments,
        "clients": s.clients,
        "tickets": s.tickets,
        "notifier": s.notifier,
    }


async def new_member(s: Stack) -> tuple[str, str, Headers]:
    """A member with no rights and no department: (id, login, session)."""
    name = f"eve{uuid.uuid4().hex[:6]}"
    body = {"login": name, "password": f"{name}-password", "full_name": {"en": "Eve"}}
    created = await s.identity.post("/staff", json=body, headers=s.admin)
    assert created.status_code == 201, created.text
    return str(created.json()["id"]), name, await login(s.identity, name, f"{name}-password")


async def rejected(client: httpx.AsyncClient) -> int:
    count: int = (await client.get("/ready")).json()["signed_facts_rejected"]
    return count


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


def forged_envelope(fact: StaffAccessChanged, version: int) -> RecordedEvent:
    return access_fact_envelope(fact, version, position=10**9 + version)


async def test_a_forged_access_fact_changes_nothing_in_any_service(
    stack: Stack, kafka_bootstrap: str
) -> None:
    s = stack
    clients = services(s)
    eve_id, eve_login, eve = await new_member(s)
    # Every service knows eve (refuses her for want of a right, not as a stranger).
    for service, (path, _) in GUARDED.items():
        await eventually(
            lambda c=clients[service], p=path: c.get(p, headers=eve),  # type: ignore[misc]
            lambda r: r.status_code == 403,
        )
    before = {service: await rejected(client) for service, client in clients.items()}

    everything = StaffAccessChanged(
        staff_id=eve_id,
        login=eve_login,
        disabled=False,
        full_access=True,
        rights=[right for _, right in GUARDED.values()],
        departments=[],
        ip_policy=IpPolicy(),
        bind_session_to_ip=False,
    )
    modest = everything.model_copy(update={"full_access": False, "rights": []})
    signed_then_changed = sign(identity_key(), forged_envelope(modest, 1_000_002))
    forgeries = [
        forged_envelope(everything, 1_000_000),  # unsigned
        sign(Ed25519PrivateKey.generate(), forged_envelope(everything, 1_000_001)),
        signed_then_changed._replace(
            data={**signed_then_changed.data, "full_access": True, "rights": everything.rights}
        ),
    ]
    prefix = s.apps["tickets"].state.runtime.settings.topic_prefix
    await produce_raw(kafka_bootstrap, f"{prefix}identity.events", *forgeries)

    # Each service's access feed has read all three and turned them away...
    for service, client in clients.items():

        async def reported(c: httpx.AsyncClient = client, n: int = before[service]) -> bool:
            return await rejected(c) >= n + len(forgeries)

        await until(reported, f"{service} never reported the forged facts")
        ready = (await client.get("/ready")).json()
        assert "identity fact(s) ignored" in ready["problems"]["signed_facts"], (service, ready)
    # ...and eve has nothing more than before anywhere.
    for service, (path, _) in GUARDED.items():
        answer = await clients[service].get(path, headers=eve)
        assert answer.status_code == 403, (service, "a forged fact granted a right")
    me = (await s.identity.get("/me", headers=eve)).json()
    assert me["permissions"] == [] and me["full_access"] is False, me

    # Identity's next real fact for eve, on the same partition behind the forgeries:
    # once each copy holds exactly it, each has passed the forgeries too, and had
    # it taken one (far ahead in version) it would have ignored this one.
    granted = await s.identity.post(
        f"/staff/{eve_id}/rights", json={"right": "tickets.view"}, headers=s.admin
    )
    assert granted.status_code == 201, granted.text

    def holds_only_tickets_view(service: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            access = s.apps[service].state.runtime.access.by_principal.get(eve_id)
            return access is not None and (access.full_access, set(access.rights)) == (
                False,
                {"tickets.view"},
            )

        return check

    for service in ("departments", "clients", "tickets", "notifier"):
        await until(holds_only_tickets_view(service), f"{service}'s copy of eve")
    await eventually(
        lambda: s.identity.get("/me", headers=eve),
        lambda r: (r.json()["full_access"], r.json()["permissions"]) == (False, ["tickets.view"]),
    )
    for service, (path, right) in GUARDED.items():
        answer = await clients[service].get(path, headers=eve)
        assert answer.status_code == (200 if right == "tickets.view" else 403), service

    # And the rest of identity's real facts apply everywhere.
    for _, right in GUARDED.values():
        granted = await s.identity.post(
            f"/staff/{eve_id}/rights", json={"right": right}, headers=s.admin
        )
        assert granted.status_code in (200, 201), granted.text
    for service, (path, _) in GUARDED.items():
        await eventually(
            lambda c=clients[service], p=path: c.get(p, headers=eve),  # type: ignore[misc]
            lambda r: r.status_code == 200,
        )


TWO_MB = 2 * 1024 * 1024


async def test_a_two_megabyte_body_is_refused_with_413_by_every_service(stack: Stack) -> None:
    huge = b'{"name": "' + b"x" * TWO_MB + b'"}'
    clients = services(stack)
    for service, method, path in (
        ("identity", "POST", "/staff"),
        ("departments", "POST", "/departments"),
        ("clients", "POST", "/clients"),
        ("tickets", "POST", "/tickets"),
        ("notifier", "PUT", f"/subscriptions/{uuid.uuid4()}"),
    ):
        refused = await clients[service].request(
            method,
            path,
            content=huge,
            headers={**stack.admin, "content-type": "application/json"},
        )
        assert refused.status_code == 413, (service, refused.text[:200])
        assert refused.json()["error"]["code"] == "body_too_large", service


async def test_a_method_a_path_does_not_take_is_405_with_allow_on_every_service(
    stack: Stack,
) -> None:
    # Paths taken by two routes (GET and POST) as well as by one: Allow names them all.
    takes = {"identity": "GET, POST", "departments": "GET, POST", "clients": "GET, POST",
             "tickets": "GET, POST", "notifier": "GET"}  # fmt: skip
    for service, client in services(stack).items():
        path = GUARDED[service][0]
        answer = await client.request("PUT", path, headers=stack.admin)
        assert answer.status_code == 405, (service, answer.text)
        assert answer.json()["error"]["code"] == "method_not_allowed", service
        assert answer.headers["allow"] == takes[service], (service, answer.headers)
