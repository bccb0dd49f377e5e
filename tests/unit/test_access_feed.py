"""The access feed holds a fact it fails on, never parks it, and says so in ``problems``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from shared.access import feed as feed_module
from shared.access.control import AccessCopy, access_metadata
from shared.access.feed import AccessFeed
from shared.messaging.signatures import FactVerifier, sign
from shared.readmodel.database import ReadModelDB
from tests.unit.test_signed_facts import IDENTITY, access_fact

TP = TopicPartition("identity.events", 0)


class _Consumer:
    """What the feed asks of aiokafka's consumer, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.calls.append(("seek", offset))

    def pause(self, tp: TopicPartition) -> None:
        self.calls.append(("pause", tp))

    def resume(self, tp: TopicPartition) -> None:
        self.calls.append(("resume", tp))


async def test_a_failing_revocation_holds_its_partition_until_it_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "FIRST_PAUSE", 0.0)
    db = await ReadModelDB.open(f"sqlite:///{tmp_path}/read.db")
    try:
        await db.create_tables(access_metadata)
        copy = AccessCopy()
        problems: dict[str, str] = {}
        feed = AccessFeed(
            "tickets.access", "127.0.0.1:9", TP.topic, db, copy,
            FactVerifier(IDENTITY.public_key(), problems), problems=problems,
        )  # fmt: skip
        await feed.load()
        granted = sign(IDENTITY, access_fact(True, version=1))
        revoked = sign(IDENTITY, access_fact(False, version=2))
        consumer = _Consumer()
        await feed.take(consumer, TP, [SimpleNamespace(offset=0, value=granted.to_json())])
        assert copy.by_principal["s-1"].full_access

        store = copy.store
        broken = {"yes": True}

        async def failing(conn: Any, payload: Any, version: int) -> None:
            if broken["yes"]:
                raise RuntimeError("value too long for 'alice' [parameters: ('alice',)]")
            await store(conn, payload, version)

        monkeypatch.setattr(copy, "store", failing)
        message = SimpleNamespace(offset=1, value=revoked.to_json())
        await feed.take(consumer, TP, [message])
        # Held: rewound to the revocation and paused, not skipped; the rights stay as
        # they were, and /ready's problems say why, without the fact's values.
        assert consumer.calls == [("seek", 1), ("pause", TP)]
        assert copy.by_principal["s-1"].full_access
        assert feed.positions[0] == 1
        held = problems["access:identity.events[0]"]
        assert "held at offset 1" in held and "RuntimeError: value too long" in held
        assert "alice" not in held

        feed.resume_due(consumer)  # the pause is over
        assert consumer.calls[-1] == ("resume", TP)
        broken["yes"] = False
        await feed.take(consumer, TP, [message])
        assert not copy.by_principal["s-1"].full_access  # the revocation applied
        assert feed.positions[0] == 2
        assert "access:identity.events[0]" not in problems
    finally:
        await db.close()
