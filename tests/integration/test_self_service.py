"""Self-service passwords and the second factor over real HTTP, PostgreSQL, the broker
and SMTP: identity, clients and the notifier, with an aiosmtpd mailbox.

* ``POST /auth/forgot`` answers 202 for any login; a known one gets a mail, sent
  by the notifier, whose link works once, ends every session, and expires; the
  token is in no event of any store.
* ``POST /me/password`` ends the member's other sessions, this one goes on.
* TOTP: a right code logs in, a wrong or replayed one is 401, a recovery code
  works once; ``OTP_REQUIRED_FOR_FULL_ACCESS`` limits a full-access member's
  session to setting it up.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from services.clients.service import SPEC as CLIENTS
from services.identity.app.application import IdentityApplication
from services.identity.service import SPEC as IDENTITY
from services.notifier.copies import directory
from services.notifier.projections import deliveries
from services.notifier.service import SPEC as NOTIFIER
from shared.runtime.service import create_app
from shared.runtime.settings import ServiceSettings
from tests.conftest import fresh_database
from tests.http_util import eventually, serving
from tests.support.mail_and_sms import MailBox, mailbox

ADMIN_PASSWORD = "admin-password-for-tests"
SECRET = SecretStr("self-service-test-secret-" * 3)
IP = "203.0.113.9"
RESET_URL = "http://console.example/reset"
Headers = dict[str, str]


@dataclass
class Stack:
    identity: httpx.AsyncClient
    clients: httpx.AsyncClient
    admin: Headers
    mail: MailBox
    apps: dict[str, FastAPI]
    stores: dict[str, Any]

    @property
    def app(self) -> IdentityApplication:
        composed: IdentityApplication = self.apps["identity"].state.runtime.composed
        return composed


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
    tmp = tmp_path_factory.mktemp("self_service")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ADMIN_PASSWORD", ADMIN_PASSWORD)
        env.setenv("PASSWORD_RESET_URL", RESET_URL)
        async with (
            fresh_database() as identity_db,
            fresh_database() as clients_db,
            fresh_database() as notifier_db,
            mailbox() as mail,
        ):
            env.setenv("SMTP_HOST", "127.0.0.1")
            env.setenv("SMTP_PORT", str(mail.port))
            apps = {
                "identity": create_app(
                    IDENTITY, _settings(identity_db, kafka_bootstrap, prefix, tmp / "i")
                )
            }
            async with serving(apps["identity"]) as identity_base:
                env.setenv("IDENTITY_URL", identity_base)
                apps["clients"] = create_app(
                    CLIENTS, _settings(clients_db, kafka_bootstrap, prefix, tmp / "c")
                )
                async with serving(apps["clients"]) as clients_base:
                    env.setenv("CLIENTS_URL", clients_base)
                    apps["notifier"] = create_app(
                        NOTIFIER, _settings(notifier_db, kafka_bootstrap, prefix, tmp / "n")
                    )
                    async with (
                        serving(apps["notifier"]),
                        httpx.AsyncClient(base_url=identity_base, timeout=60) as identity,
                        httpx.AsyncClient(base_url=clients_base, timeout=60) as clients,
                    ):
                        admin = await login(identity, "admin", ADMIN_PASSWORD)
                        await eventually(
                            lambda: clients.get("/projects", headers=admin),
                            lambda r: r.status_code == 200,
                        )
                        stores = {name: app.state.runtime.store for name, app in apps.items()}
                        yield Stack(identity, clients, admin, mail, apps, stores)


# ---------------------------------------------------------------- helpers


async def login(identity: httpx.AsyncClient, name: str, password: str, **extra: str) -> Headers:
    answer = await identity.post(
        "/auth/login",
        json={"login": name, "password": password, **extra},
        headers={"X-Forwarded-For": IP},
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}", "X-Forwarded-For": IP}


async def try_login(stack: Stack, name: str, password: str, **extra: str) -> httpx.Response:
    return await stack.identity.post(
        "/auth/login",
        json={"login": name, "password": password, **extra},
        headers={"X-Forwarded-For": IP},
    )


def unique(name: str) -> str:
    return f"{name}{uuid.uuid4().hex[:6]}"


def code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


async def staff(stack: Stack, *, full_access: bool = False) -> tuple[str, str, str, Headers]:
    """A member with an e-mail the notifier knows: (id, login, e-mail, headers)."""
    name = unique("member")
    email = f"{name}@staff.example.com"
    created = await stack.identity.post(
        "/staff",
        json={
            "login": name,
            "password": f"Passw0rd-{name}",
            "full_name": {"en": f"Member {name}"},
            "email": email,
            "full_access": full_access,
        },
        headers=stack.admin,
    )
    assert created.status_code == 201, created.text
    staff_id = str(created.json()["id"])
    db = stack.apps["notifier"].state.runtime.db

    async def carded() -> bool:
        async with db.reading() as conn:
            return bool(await directory.staff(conn, [staff_id]))

    await until(carded, "the notifier has the member's card")
    return staff_id, name, email, await login(stack.identity, name, f"Passw0rd-{name}")


async def until(check: Any, what: str, timeout: float = 60) -> Any:
    started = time.monotonic()
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() - started < timeout, f"never: {what}"
        await asyncio.sleep(0.05)


async def reset_mail(stack: Stack, address: str, already: int = 0) -> str:
    """The token of the next reset mail to ``address`` (after ``already`` of them)."""

    async def arrived() -> list[Any]:
        return stack.mail.to(address)[already:]

    mails = await until(arrived, f"a reset mail to {address}")
    body = mails[0].body
    link = re.search(r"(http\S+)", body)
    assert link is not None, body
    assert link.group(1).startswith(RESET_URL + "?token=")
    return parse_qs(urlparse(link.group(1)).query)["token"][0]


async def events_mention(stack: Stack, text: str) -> list[str]:
    """Where ``text`` appears in any stored event of the three services."""
    found = []
    for name, store in stack.stores.items():
        after = 0
        while page := await store.read_all(after, 1000):
            found += [f"{name}:{e.type}" for e in page if text in str(e.data)]
            after = page[-1].position
    return found


# ---------------------------------------------------------------- forgotten passwords


async def test_a_reset_link_arrives_by_mail_works_once_and_ends_every_session(
    stack: Stack,
) -> None:
    _, name, email, headers = await staff(stack)
    unknown = await stack.identity.post("/auth/forgot", json={"login": unique("nobody")})
    assert unknown.status_code == 202
    asked = await stack.identity.post("/auth/forgot", json={"login": name})
    assert asked.status_code == 202

    token = await reset_mail(stack, email)
    assert await events_mention(stack, token) == []
    assert await events_mention(stack, token.partition(".")[2]) == []
    async with stack.apps["notifier"].state.runtime.db.reading() as conn:
        kept = [
            row.body
            for row in await conn.execute(select(deliveries).where(deliveries.c.to == email))
        ]
    assert kept and all("%reset_link%" in body and token not in body for body in kept)

    short = await stack.identity.post("/auth/reset", json={"token": token, "new_password": "short"})
    assert short.status_code == 422, short.text  # and the link is not spent by it
    done = await stack.identity.post(
        "/auth/reset", json={"token": token, "new_password": "brand-new-password"}
    )
    assert done.status_code == 204, done.text

    again = await stack.identity.post(
        "/auth/reset", json={"token": token, "new_password": "another-new-password"}
    )
    assert (again.status_code, code(again)) == (410, "reset_token_used")
    ended = await stack.identity.get("/me", headers=headers)
    assert (ended.status_code, code(ended)) == (401, "session_ended")
    refused = await try_login(stack, name, f"Passw0rd-{name}")
    assert refused.status_code == 401
    await login(stack.identity, name, "brand-new-password")

    forged = await stack.identity.post(
        "/auth/reset",
        json={"token": token.partition(".")[0] + ".forged", "new_password": "whatever-1234"},
    )
    assert (forged.status_code, code(forged)) == (400, "reset_token_invalid")


async def test_a_reset_link_expires(stack: Stack) -> None:
    _, name, email, _ = await staff(stack)
    assert (await stack.identity.post("/auth/forgot", json={"login": name})).status_code == 202
    token = await reset_mail(stack, email)
    resets = stack.app.password_resets
    resets.clock = lambda: datetime.now(UTC) + resets.lifetime + timedelta(seconds=1)
    try:
        late = await stack.identity.post(
            "/auth/reset", json={"token": token, "new_password": "too-late-password"}
        )
    finally:
        resets.clock = lambda: datetime.now(UTC)
    assert (late.status_code, code(late)) == (410, "reset_token_expired")


async def test_a_client_gets_its_reset_link_at_its_account_address(stack: Stack) -> None:
    project = await stack.clients.post(
        "/projects", json={"name": unique("project")}, headers=stack.admin
    )
    assert project.status_code == 201, project.text
    name = unique("client")
    email = f"{name}@client.example.com"
    created = await eventually(
        lambda: stack.clients.post(
            "/clients",
            json={
                "login": name,
                "password": f"Passw0rd-{name}",
                "email": email,
                "country": "DE",
                "customer_status": "individual",
                "contact_person": f"Person {name}",
                "project_id": project.json()["id"],
            },
            headers=stack.admin,
        ),
        lambda r: r.status_code != 422,
    )
    assert created.status_code == 201, created.text
    # The notifier reads the address from the clients service's read model: the card
    # must be there (a client who forgets a password has had one for a while).
    await eventually(
        lambda: stack.clients.get(f"/clients/{created.json()['id']}", headers=stack.admin),
        lambda r: r.status_code == 200,
    )
    session = await login(stack.identity, name, f"Passw0rd-{name}")
    assert (await stack.identity.post("/auth/forgot", json={"login": name})).status_code == 202
    token = await reset_mail(stack, email)
    done = await stack.identity.post(
        "/auth/reset", json={"token": token, "new_password": "client-new-password"}
    )
    assert done.status_code == 204, done.text
    ended = await stack.identity.get("/me", headers=session)  # a client's sessions end too
    assert (ended.status_code, code(ended)) == (401, "session_ended")
    await login(stack.identity, name, "client-new-password")


async def test_changing_the_own_password_ends_the_other_sessions(stack: Stack) -> None:
    _, name, _, first = await staff(stack)
    second = await login(stack.identity, name, f"Passw0rd-{name}")
    changed = await stack.identity.post(
        "/me/password",
        json={"current_password": f"Passw0rd-{name}", "new_password": "changed-password-1"},
        headers=first,
    )
    assert changed.status_code == 204, changed.text
    assert (await stack.identity.get("/me", headers=first)).status_code == 200
    ended = await stack.identity.get("/me", headers=second)
    assert (ended.status_code, code(ended)) == (401, "session_ended")


# ---------------------------------------------------------------- second factor


async def enable_totp(stack: Stack, headers: Headers) -> tuple[pyotp.TOTP, int, list[str]]:
    """Turn TOTP on: the authenticator, the step confirmed with, the recovery codes."""
    enrolled = await stack.identity.post("/me/2fa", headers=headers)
    assert enrolled.status_code == 201, enrolled.text
    uri = enrolled.json()["uri"]
    assert uri.startswith("otpauth://totp/") and "secret=" in uri
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    assert await events_mention(stack, secret) == []
    step = int(time.time()) // 30
    wrong = await stack.identity.post("/me/2fa/confirm", json={"code": "000000"}, headers=headers)
    if totp.at(step * 30) == "000000":  # one chance in a million
        return await enable_totp(stack, headers)
    assert (wrong.status_code, code(wrong)) == (403, "otp_invalid")
    confirmed = await stack.identity.post(
        "/me/2fa/confirm", json={"code": totp.at(step * 30)}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    return totp, step, codes


async def test_totp_right_wrong_and_replayed_and_recovery_codes_once(stack: Stack) -> None:
    _, name, _, headers = await staff(stack)
    password = f"Passw0rd-{name}"
    totp, step, recovery = await enable_totp(stack, headers)

    missing = await try_login(stack, name, password)
    assert (missing.status_code, code(missing)) == (401, "otp_required")
    wrong_code = "000000" if totp.at((step + 1) * 30) != "000000" else "111111"
    wrong = await try_login(stack, name, password, otp=wrong_code)
    assert (wrong.status_code, code(wrong)) == (401, "otp_invalid")
    # The step confirmed with is spent: its code again is a replay.
    replayed = await try_login(stack, name, password, otp=totp.at(step * 30))
    assert (replayed.status_code, code(replayed)) == (401, "otp_invalid")
    # The next step's code (within the one step of drift allowed) logs in, once.
    following = totp.at((step + 1) * 30)
    await login(stack.identity, name, password, otp=following)
    again = await try_login(stack, name, password, otp=following)
    assert (again.status_code, code(again)) == (401, "otp_invalid")

    await login(stack.identity, name, password, otp=recovery[0])
    reused = await try_login(stack, name, password, otp=recovery[0])
    assert (reused.status_code, code(reused)) == (401, "otp_invalid")
    # A right password with a wrong code is a wrong password for the throttle.
    wrong_password = await try_login(stack, name, "not-the-password", otp=recovery[1])
    assert (wrong_password.status_code, code(wrong_password)) == (401, "invalid_credentials")
    await login(stack.identity, name, password, otp=recovery[1])


async def test_a_full_access_member_without_totp_gets_a_setup_session_when_it_is_mandatory(
    stack: Stack,
) -> None:
    _, name, _, _ = await staff(stack, full_access=True)
    identity = stack.app.identity
    identity.otp_required_for_full_access = True
    try:
        answer = await try_login(stack, name, f"Passw0rd-{name}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["scope"] == "second_factor_setup"
        limited = {
            "Authorization": f"Bearer {answer.json()['access_token']}",
            "X-Forwarded-For": IP,
        }
        elsewhere = await stack.identity.get("/staff", headers=limited)
        assert (elsewhere.status_code, code(elsewhere)) == (403, "second_factor_required")
        other_service = await eventually(
            lambda: stack.clients.get("/projects", headers=limited),
            lambda r: r.status_code != 401,  # until the clients service knows the member
        )
        assert (other_service.status_code, code(other_service)) == (403, "second_factor_required")
        assert (await stack.identity.get("/me", headers=limited)).status_code == 200
        totp, step, _ = await enable_totp(stack, limited)
        full = await try_login(stack, name, f"Passw0rd-{name}", otp=totp.at((step + 1) * 30))
        assert full.status_code == 200, full.text
        assert full.json()["scope"] is None
        headers = {"Authorization": f"Bearer {full.json()['access_token']}", "X-Forwarded-For": IP}
        assert (await stack.identity.get("/staff", headers=headers)).status_code == 200
    finally:
        identity.otp_required_for_full_access = False
