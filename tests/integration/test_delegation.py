"""The escalation matrix over real HTTP: identity and departments, PostgreSQL, the broker.

Each route that moves rights or touches an account (grant, revoke, password,
IP policy, departments, full access, disabling, avatar) is called by a member with
full access (kate) and by one without it who holds the whole ``staff`` and
``departments`` sections and ``clients.view`` (mike), on their own account, on
another member's and on a full-access member's (issue 17). Every target is
made fresh for its call, so the cells do not depend on each other.

The sections do not give the functions that manage rights (``staff.rights``,
``departments.rights``): those are full-access staff's alone, so mike is
refused every rights route (403 ``forbidden``), and nobody, kate included, can
grant them or turn them on for a department (403 ``full_access_only``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.departments.domain.defaults import TECHNICAL_SUPPORT
from tests.http_util import eventually
from tests.integration.test_departments import (
    Stack,
    add_staff,
    login,
    new_department,
    rights_become,
    stack,
    unique,
)
from tests.integration.test_identity import image

__all__ = ["stack"]  # the module-scoped services of test_departments, run again for this module

STRANGER_PASSWORD = "a-password-set-by-someone-else"


@dataclass
class Actor:
    id: str
    session: dict[str, str]
    login: str


@dataclass
class World:
    s: Stack
    kate: Actor  # full access
    mike: Actor  # staff, departments, clients.view; no full access; no department
    support: str  # a department with the whole tickets section on
    sales: str  # a department with no rights


async def member(s: Stack, name: str, full_access: bool = False) -> Actor:
    body = {
        "login": name,
        "password": f"{name}-password",
        "full_name": {"en": name.title()},
        "full_access": full_access,
    }
    answer = await s.identity.post("/staff", json=body, headers=s.admin)
    assert answer.status_code == 201, answer.text
    return Actor(str(answer.json()["id"]), await login(s.identity, name, f"{name}-password"), name)


@pytest.fixture(scope="module")
async def world(stack: Stack) -> World:
    s = stack
    kate = await member(s, unique("kate"), full_access=True)
    mike = await member(s, unique("mike"))
    for right in ("staff", "departments", "clients.view"):
        granted = await s.identity.post(
            f"/staff/{mike.id}/rights", json={"right": right}, headers=s.admin
        )
        assert granted.status_code == 201, granted.text
    support = (await new_department(s))["id"]
    sales = (await new_department(s))["id"]
    turned = await s.departments.post(
        f"/departments/{support}/rights",
        json={"right": "tickets", "enabled": True},
        headers=s.admin,
    )
    assert turned.status_code == 200, turned.text
    # Both services know mike's rights and both departments before the matrix starts.
    await eventually(
        lambda: s.departments.get(f"/departments/{support}", headers=mike.session),
        lambda r: r.status_code == 200,
    )
    await add_staff(s, unique("probe"), [support, sales])
    return World(s, kate, mike, support, sales)


# ---------------------------------------------------------------- the identity routes

Expect = tuple[int, str | None]  # status, error code
OK_200: Expect = (200, None)
OK_201: Expect = (201, None)
OWN: Expect = (403, "own_access")
NOT_HELD: Expect = (403, "right_not_held")
FULL_MEMBER: Expect = (403, "full_access_member")
FULL_NEEDED: Expect = (403, "full_access_required")
FORBIDDEN: Expect = (403, "forbidden")  # the route's own right: staff.rights
FULL_ONLY: Expect = (403, "full_access_only")


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # {t}: the target's id
    body: Any
    # (actor, target) -> expected; actor "full"/"holder", target "own"/"other"/"other_full"
    expect: dict[tuple[str, str], Expect]
    # Given to the target by admin before the call (a right to take away).
    held: str | None = None
    upload: bool = False  # the body is the avatar's file, not JSON


def rights_route(own: Expect, ok: Expect) -> dict[tuple[str, str], Expect]:
    """A rights route: full-access staff only (the staff section does not give staff.rights)."""
    return {
        ("full", "own"): own,
        ("holder", "own"): FORBIDDEN,
        ("full", "other"): ok,
        ("holder", "other"): FORBIDDEN,
        ("full", "other_full"): ok,
        ("holder", "other_full"): FORBIDDEN,
    }


def same_for_both(
    own: Expect, other: Expect, full_other_by_holder: Expect, ok: Expect
) -> dict[tuple[str, str], Expect]:
    return {
        ("full", "own"): own,
        ("holder", "own"): own,
        ("full", "other"): ok,
        ("holder", "other"): other,
        ("full", "other_full"): ok,
        ("holder", "other_full"): full_other_by_holder,
    }


ROUTES = [
    Route("grant a right", "POST", "/staff/{t}/rights", {"right": "clients.view"},
          rights_route(OWN, OK_201)),
    Route("grant a section", "POST", "/staff/{t}/rights", {"right": "tickets"},
          rights_route(OWN, OK_201)),
    Route("grant staff.rights", "POST", "/staff/{t}/rights", {"right": "staff.rights"},
          rights_route(FULL_ONLY, FULL_ONLY)),
    Route("grant departments.rights", "POST", "/staff/{t}/rights",
          {"right": "departments.rights"}, rights_route(FULL_ONLY, FULL_ONLY)),
    Route("revoke a right", "DELETE", "/staff/{t}/rights/staff.view", None,
          rights_route(OWN, OK_200), held="staff.view"),
    Route("set the password", "PATCH", "/staff/{t}", {"password": STRANGER_PASSWORD},
          same_for_both(OK_200, OK_200, FULL_MEMBER, OK_200)),
    Route("change the IP policy", "PATCH", "/staff/{t}",
          {"ip_policy": {"mode": "list", "allowed": ["127.0.0.0/8"]}},
          same_for_both(OK_200, OK_200, FULL_MEMBER, OK_200)),
    Route("place in a department of unheld rights", "PATCH", "/staff/{t}",
          {"departments": ["{support}"]}, same_for_both(OWN, NOT_HELD, FULL_MEMBER, OK_200)),
    Route("place in a department of held rights", "PATCH", "/staff/{t}",
          {"departments": ["{sales}"]}, same_for_both(OWN, OK_200, FULL_MEMBER, OK_200)),
    Route("give full access", "PATCH", "/staff/{t}", {"full_access": True}, {
        ("full", "own"): OK_200,  # kate has it already: nothing changes
        ("holder", "own"): OWN,
        ("full", "other"): OK_200,
        ("holder", "other"): FULL_NEEDED,
        ("full", "other_full"): OK_200,
        ("holder", "other_full"): FULL_MEMBER,
    }),
    Route("disable", "DELETE", "/staff/{t}", None,
          same_for_both((409, "cannot_disable_self"), OK_200, FULL_MEMBER, OK_200)),
    Route("set the avatar", "PUT", "/staff/{t}/avatar", None,
          same_for_both(OK_200, OK_200, FULL_MEMBER, OK_200), upload=True),
]  # fmt: skip

CELLS = [
    (route, actor, target)
    for route in ROUTES
    for actor in ("full", "holder")
    for target in ("own", "other", "other_full")
]


def _fill(value: Any, w: World, target: str) -> Any:
    if isinstance(value, str):
        return value.format(t=target, support=w.support, sales=w.sales)
    if isinstance(value, list):
        return [_fill(v, w, target) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, w, target) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("route", "actor", "target"), CELLS, ids=[f"{r.name}-{a}-{t}" for r, a, t in CELLS]
)
async def test_escalation_matrix(world: World, route: Route, actor: str, target: str) -> None:
    w, s = world, world.s
    acting = w.kate if actor == "full" else w.mike
    if target == "own":
        # A fresh member with the same standing as the actor acts on itself.
        acting = await member(s, unique("self"), full_access=actor == "full")
        if actor == "holder":
            for right in ("staff", "departments", "clients.view"):
                await s.identity.post(
                    f"/staff/{acting.id}/rights", json={"right": right}, headers=s.admin
                )
            await eventually(
                lambda: s.identity.get("/staff", headers=acting.session),
                lambda r: r.status_code == 200,
            )
        victim = acting
    else:
        victim = await member(s, unique("target"), full_access=target == "other_full")
    if route.held is not None and target != "own":
        granted = await s.identity.post(
            f"/staff/{victim.id}/rights", json={"right": route.held}, headers=s.admin
        )
        assert granted.status_code == 201
    answer = await s.identity.request(
        route.method,
        _fill(route.path, w, victim.id),
        json=_fill(route.body, w, victim.id),
        files={"avatar": ("me.png", image())} if route.upload else None,
        headers=acting.session,
    )
    status, code = route.expect[(actor, target)]
    assert answer.status_code == status, answer.text
    if code is not None:
        assert answer.json()["error"]["code"] == code, answer.text
    if route.name == "set the password" and target != "own" and status == 200:
        # Set by someone else: the member's sessions end, the new password works.
        assert (await s.identity.get("/me", headers=victim.session)).status_code == 401
        await login(s.identity, victim.login, STRANGER_PASSWORD)
    if route.name == "set the password" and status == 403:
        # Nothing changed: the old password still works, the session still runs.
        assert (await s.identity.get("/me", headers=victim.session)).status_code == 200
        await login(s.identity, victim.login, f"{victim.login}-password")


@pytest.mark.parametrize(
    ("actor", "body", "expect"),
    [
        ("full", {"departments": ["{support}"]}, OK_201),
        ("holder", {"departments": ["{support}"]}, NOT_HELD),
        ("holder", {"departments": ["{sales}"]}, OK_201),
        ("full", {"full_access": True}, OK_201),
        ("holder", {"full_access": True}, FULL_NEEDED),
    ],
)
async def test_creating_staff_gives_only_what_the_creator_holds(
    world: World, actor: str, body: dict[str, Any], expect: Expect
) -> None:
    w = world
    acting = w.kate if actor == "full" else w.mike
    name = unique("new")
    answer = await w.s.identity.post(
        "/staff",
        json={"login": name, "password": f"{name}-password", "full_name": {"en": "N"}}
        | _fill(body, w, ""),
        headers=acting.session,
    )
    assert answer.status_code == expect[0], answer.text
    if expect[1] is not None:
        assert answer.json()["error"]["code"] == expect[1]
        refused = await w.s.identity.post(
            "/auth/login", json={"login": name, "password": f"{name}-password"}
        )
        assert refused.status_code == 401  # nothing was stored


# ---------------------------------------------------------------- departments' rights


async def test_only_full_access_staff_turn_a_departments_rights_and_never_the_managers(
    world: World,
) -> None:
    w, s = world, world.s
    target = (await new_department(s))["id"]

    async def switch(who: Actor, right: str, enabled: bool = True) -> httpx.Response:
        return await s.departments.post(
            f"/departments/{target}/rights",
            json={"right": right, "enabled": enabled},
            headers=who.session,
        )

    # mike holds the departments section, which does not give departments.rights.
    for right in ("clients.view", "clients", "tickets.all_departments"):
        refused = await switch(w.mike, right)
        assert refused.status_code == 403, (right, refused.text)
        assert refused.json()["error"]["code"] == "forbidden"
        assert "departments.rights" in refused.json()["error"]["message"]
    assert (await switch(w.kate, "clients")).status_code == 200
    assert (await switch(w.kate, "clients.delete", False)).status_code == 200
    # Nobody turns on a function that manages rights: give full access instead.
    for right in ("departments.rights", "staff.rights"):
        refused = await switch(w.kate, right)
        assert refused.status_code == 403, (right, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "full_access_only" and error["field"] == "right", error


async def test_a_section_a_department_enables_does_not_give_the_managers(world: World) -> None:
    s = world.s
    own = (await new_department(s))["id"]
    for right in ("staff", "departments"):
        turned = await s.departments.post(
            f"/departments/{own}/rights", json={"right": right, "enabled": True}, headers=s.admin
        )
        assert turned.status_code == 200, turned.text
    _, nora = await add_staff(s, unique("nora"), [own])
    me = await eventually(
        lambda: s.identity.get("/me", headers=nora),
        lambda r: {"staff.edit", "departments.edit"} <= set(r.json()["permissions"]),
    )
    assert not {"staff.rights", "departments.rights"} & set(me.json()["permissions"])
    other = (await new_department(s))["id"]
    # Once departments' copy knows nora (she may view departments), she still may not
    # turn rights on or off, nor grant them at identity.
    await eventually(
        lambda: s.departments.get(f"/departments/{other}", headers=nora),
        lambda r: r.status_code == 200,
    )
    refused = await s.departments.post(
        f"/departments/{other}/rights",
        json={"right": "staff.view", "enabled": True},
        headers=nora,
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    target = await member(s, unique("target"))
    granting = await s.identity.post(
        f"/staff/{target.id}/rights", json={"right": "staff.view"}, headers=nora
    )
    assert granting.status_code == 403 and granting.json()["error"]["code"] == "forbidden"


# ---------------------------------------------------------------- inherited sections, defaults


async def test_a_section_from_a_department_is_inherited_like_its_functions(world: World) -> None:
    s = world.s
    billing = (await new_department(s))["id"]
    for right, enabled in (("clients", True), ("clients.delete", False)):
        turned = await s.departments.post(
            f"/departments/{billing}/rights",
            json={"right": right, "enabled": enabled},
            headers=s.admin,
        )
        assert turned.status_code == 200
    staff_id, session = await add_staff(s, unique("olga"), [billing])
    await eventually(
        lambda: s.identity.get("/me", headers=session),
        lambda r: "clients.view" in r.json()["permissions"],
    )
    section = await s.identity.delete(f"/staff/{staff_id}/rights/clients", headers=s.admin)
    assert section.status_code == 409, section.text
    assert section.json()["error"]["code"] == "inherited_right"
    never = await s.identity.delete(f"/staff/{staff_id}/rights/finance", headers=s.admin)
    assert never.status_code == 404


async def test_technical_support_works_its_own_queue_but_not_every_departments(
    world: World,
) -> None:
    s = world.s
    _, session = await add_staff(s, unique("tess"), [TECHNICAL_SUPPORT.department_id])
    await rights_become(
        s,
        session,
        {
            "tickets.view",
            "tickets.reply",
            "tickets.internal_note",
            "tickets.assign",
            "tickets.transfer",
            "tickets.close",
            "tickets.reopen",
        },
    )


async def test_the_tickets_section_does_not_give_every_departments_tickets(world: World) -> None:
    s = world.s
    _, session = await add_staff(s, unique("tina"), [world.support])
    me = await eventually(
        lambda: s.identity.get("/me", headers=session),
        lambda r: "tickets.view" in r.json()["permissions"],
    )
    assert "tickets.all_departments" not in me.json()["permissions"]


# ---------------------------------------------------------------- references and lengths


async def test_staff_in_a_department_created_a_moment_ago_is_accepted_at_once(
    world: World,
) -> None:
    s = world.s
    department = (await new_department(s))["id"]
    name = unique("fresh")
    body = {"login": name, "password": f"{name}-password", "full_name": {"en": "Fresh"}}
    added = await s.identity.post(
        "/staff", json={**body, "departments": [department]}, headers=s.admin
    )
    assert added.status_code == 201, added.text
    missing = await s.identity.post(
        "/staff",
        json={**body, "login": unique("none"), "departments": ["no-such-department"]},
        headers=s.admin,
        timeout=15,  # identity waits a bounded time for a department it does not know yet
    )
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "departments.0"


async def test_a_name_longer_than_the_copies_keep_is_refused(world: World) -> None:
    s = world.s
    name = unique("long")
    answer = await s.identity.post(
        "/staff",
        json={"login": name, "password": f"{name}-password", "full_name": {"en": "x" * 400}},
        headers=s.admin,
    )
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "full_name.en"
