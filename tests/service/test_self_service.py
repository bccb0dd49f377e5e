"""Self-service passwords at the service layer (in-memory store, no HTTP): who gets a
reset, what the log keeps of it, and that a link works once and expires."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.identity.app.clients import ClientPrincipals
from services.identity.app.handlers import Identity
from services.identity.app.self_service import PasswordResets, ResetRefused
from services.identity.copies.departments import departments_metadata
from services.identity.domain.events import LocalizedName, PasswordResetRequested
from services.identity.projections import projections
from shared.domain.aggregate import DomainError
from tests.service.harness import Harness, running
from tests.service.test_identity import ADMIN, ADMIN_PASSWORD, FULL, _identity

URL = "http://console.example/reset"


@pytest.fixture
async def resets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Harness, Identity, PasswordResets]]:
    monkeypatch.setenv("ADMIN_PASSWORD", ADMIN_PASSWORD)
    async with running(tmp_path / "identity", projections()) as harness:
        await harness.db.create_tables(departments_metadata)
        identity = _identity(harness, tmp_path)
        await identity.start()
        made = PasswordResets(identity, ClientPrincipals(identity), URL, timedelta(minutes=30))
        await made.create_tables()
        yield harness, identity, made


async def requested(harness: Harness) -> list[PasswordResetRequested]:
    found = []
    after = 0
    while page := await harness.store.read_all(after, 1000):
        found += [
            PasswordResetRequested.model_validate(e.data)
            for e in page
            if e.type == PasswordResetRequested.event_type
        ]
        after = page[-1].position
    return found


async def test_only_a_known_active_login_gets_a_link_and_the_log_has_no_token(
    resets: tuple[Harness, Identity, PasswordResets],
) -> None:
    harness, _, made = resets
    await made.request("nobody")
    assert await requested(harness) == []
    await made.request("admin")
    await made.request("admin")  # within the cooldown: no second link
    (fact,) = await requested(harness)
    link = await made.link(fact.reset_id)
    assert link is not None
    token = link[0].removeprefix(URL + "?token=")
    assert token == made.token(fact.reset_id)
    everything = str([e.data for e in await harness.store.read_all(0, 10_000)])
    assert token.partition(".")[2] not in everything


async def test_a_link_sets_the_password_once_and_not_after_it_expires(
    resets: tuple[Harness, Identity, PasswordResets],
) -> None:
    harness, identity, made = resets
    added = await identity.add_staff(
        ADMIN,
        "maria-password",
        FULL,
        login="maria",
        full_name=LocalizedName(en="Maria"),
        email="maria@example.com",
        phone=None,
        departments=[],
    )
    await harness.settled()
    await made.request("maria")
    (fact,) = await requested(harness)
    token = made.token(fact.reset_id)
    with pytest.raises(DomainError):
        await made.complete(token, "short")  # the rules first: the link is not spent
    await made.complete(token, "maria-new-password")
    assert await identity.credentials.verify("maria", "maria-new-password") == (added.id, "staff")
    with pytest.raises(ResetRefused) as used:
        await made.complete(token, "maria-other-password")
    assert (used.value.status, used.value.code) == (410, "reset_token_used")
    assert await made.link(fact.reset_id) is None

    made.clock = lambda: datetime.now(UTC) - timedelta(minutes=5)  # outside the cooldown
    await made.request("maria")
    second = (await requested(harness))[-1]
    made.clock = lambda: datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(ResetRefused) as expired:
        await made.complete(made.token(second.reset_id), "maria-late-password")
    assert (expired.value.status, expired.value.code) == (410, "reset_token_expired")
    with pytest.raises(ResetRefused) as forged:
        await made.complete(second.reset_id + ".forged", "maria-late-password")
    assert (forged.value.status, forged.value.code) == (400, "reset_token_invalid")
