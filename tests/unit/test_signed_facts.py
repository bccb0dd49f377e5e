"""Identity's signature on its facts: made by the relay, checked by every consumer, and a
fact that does not verify is reported and never applied; the access copy never goes back."""

from __future__ import annotations

import os
import stat
import uuid
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from shared.access.control import (
    AccessCopy,
    IpPolicy,
    StaffAccessChanged,
    access_metadata,
    principals,
    registry,
)
from shared.access.keys import (
    KeyConfigError,
    ServiceKeys,
    ensure_keys,
    load_private_key,
    load_public_key,
    parse_public_keys,
    private_pem,
    write_fresh_keys,
)
from shared.domain.events import Actor, RecordedEvent
from shared.messaging.signatures import FactVerifier, sign, verifies
from shared.readmodel.database import ReadModelDB

IDENTITY = Ed25519PrivateKey.generate()


def access_fact(
    full_access: bool, version: int = 1, occurred: datetime | None = None
) -> RecordedEvent:
    fact = StaffAccessChanged(
        staff_id="s-1",
        login="alice",
        disabled=False,
        full_access=full_access,
        rights=[],
        departments=[],
        ip_policy=IpPolicy(),
        bind_session_to_ip=False,
    )
    encoded = registry.encode(fact)
    return RecordedEvent(
        position=version,
        stream="staff-s-1",
        stream_version=version,
        event_id=uuid.uuid4(),
        type=encoded.type,
        schema_version=encoded.schema_version,
        # Naive, as a store may hand it back: the signature must survive the topic anyway.
        occurred_at=occurred or datetime(2026, 12, 3, 7, 0, 0, 123456),
        correlation_id=None,
        causation_id=None,
        actor=Actor(id="s-0", kind="staff"),
        data=orjson.loads(orjson.dumps(encoded.data)),
    )


def through_the_topic(event: RecordedEvent) -> RecordedEvent:
    """What a consumer reads back of what the relay produced."""
    return RecordedEvent.from_json(event.to_json())


def test_a_signed_fact_verifies_after_the_topic_and_a_changed_one_does_not() -> None:
    signed = sign(IDENTITY, access_fact(full_access=False))
    read = through_the_topic(signed)
    assert verifies(IDENTITY.public_key(), read)
    tampered = read._replace(data={**read.data, "full_access": True})
    assert not verifies(IDENTITY.public_key(), tampered)
    assert not verifies(Ed25519PrivateKey.generate().public_key(), read)
    assert not verifies(IDENTITY.public_key(), read._replace(signature="not base64!"))
    assert "signature" not in access_fact(True).to_dict()  # the log's envelope stays as it was


def test_the_verifier_admits_signed_facts_and_other_events_and_reports_the_rest() -> None:
    problems: dict[str, str] = {}
    verifier = FactVerifier(IDENTITY.public_key(), problems, "tickets")
    assert verifier.admit(through_the_topic(sign(IDENTITY, access_fact(True))))
    other = access_fact(True)._replace(type="TicketOpened")  # not an identity fact
    assert verifier.admit(other)
    forged_by_another = sign(Ed25519PrivateKey.generate(), access_fact(True))
    for forged in (access_fact(True), forged_by_another):
        assert not verifier.admit(through_the_topic(forged))
    assert verifier.rejected == 2
    assert "2 identity fact(s) ignored" in problems["signed_facts"]
    assert "full_access" not in problems["signed_facts"]  # no data of the fact


async def test_the_access_copy_never_goes_back_to_an_older_version(tmp_path: Path) -> None:
    """A real, signed, but old fact produced again: neither the dicts nor the rows (what a
    restart loads) take it."""
    db = await ReadModelDB.open(f"sqlite:///{tmp_path}/read.db")
    try:
        await db.create_tables(access_metadata)
        copy = AccessCopy()
        granted, revoked = access_fact(True, version=1), access_fact(False, version=2)
        async with db.transaction() as conn:
            await copy.handle(conn, revoked)
            await copy.handle(conn, granted)  # the old one, again
        assert not copy.by_principal["s-1"].full_access
        restarted = AccessCopy()
        async with db.engine.connect() as conn:
            await restarted.load(conn)
            stored = (await conn.execute(select(principals.c.access))).scalar_one()
        assert not restarted.by_principal["s-1"].full_access
        assert orjson.loads(stored)["version"] == 2
        restarted.apply(registry.decode(granted), granted.stream_version)
        assert not restarted.by_principal["s-1"].full_access
    finally:
        await db.close()


def test_keys_are_generated_once_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    written = write_fresh_keys(directory, ["tickets", "notifier"])
    names = {p.relative_to(directory).as_posix() for p in written}
    assert names == {
        "identity.key",
        "identity.pub",
        "services/tickets.key",
        "services/tickets.pub",
        "services/notifier.key",
        "services/notifier.pub",
        "service-public-keys.json",
    }
    for path in [directory, directory / "services", *written]:
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
    before = (directory / "identity.key").read_bytes()
    ensure_keys(directory, ["tickets", "clients"])  # adds clients' pair, keeps the rest
    assert (directory / "identity.key").read_bytes() == before
    assert (directory / "services" / "clients.key").exists()
    with pytest.raises(FileExistsError):
        write_fresh_keys(directory, ["tickets"])
    inline = parse_public_keys(
        (directory / "service-public-keys.json").read_text(), "SERVICE_PUBLIC_KEYS"
    )
    assert set(inline) == {"tickets", "notifier"}
    key = load_private_key(str(directory / "identity.key"), "IDENTITY_SIGNING_KEY")
    pem = private_pem(key).decode()
    assert load_private_key(pem, "IDENTITY_SIGNING_KEY").public_key() == key.public_key()


@pytest.mark.parametrize("value", ["", "/no/such/file", "-----BEGIN PUBLIC KEY-----\nxx\n"])
def test_a_bad_key_setting_is_named_and_its_value_is_not_shown(value: str) -> None:
    with pytest.raises(KeyConfigError) as bad:
        load_public_key(value, "IDENTITY_PUBLIC_KEY")
    assert str(bad.value).startswith("IDENTITY_PUBLIC_KEY")
    assert "xx" not in str(bad.value)


def test_callers_come_from_the_setting_or_else_the_keys_directory(tmp_path: Path) -> None:
    ensure_keys(tmp_path, ["notifier"])
    found = ServiceKeys(directory=tmp_path)
    assert found.key_of("notifier") is not None
    assert found.key_of("../identity") is None and found.key_of("tickets") is None
    only: dict[str, Any] = {"clients": Ed25519PrivateKey.generate().public_key()}
    assert ServiceKeys(only, tmp_path).key_of("notifier") is None  # configured: only those


async def test_the_notifier_stream_and_every_subscription_apply_only_signed_facts() -> None:
    """The two doors identity's facts come in by besides the access feed: the runtime's
    subscriptions (tickets' and clients' staff names) and the notifier's stream."""
    from services.notifier.service import _admitted
    from shared.runtime.service import admitted

    verifier = FactVerifier(IDENTITY.public_key())
    signed = through_the_topic(sign(IDENTITY, access_fact(False)))
    forged = through_the_topic(access_fact(True))
    applied: list[RecordedEvent] = []

    async def stream(event: RecordedEvent) -> None:
        applied.append(event)

    async def subscription(conn: Any, event: RecordedEvent) -> None:
        applied.append(event)

    handle = _admitted(SimpleNamespace(verifier=verifier), stream)  # type: ignore[arg-type]
    route = admitted(verifier, subscription)
    for event in (forged, signed):
        await handle(event)
        await route(None, event)  # type: ignore[arg-type]
    assert applied == [signed, signed]
    assert verifier.rejected == 2
