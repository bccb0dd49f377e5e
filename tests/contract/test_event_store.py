"""The event-store contract: every adapter must pass every test here.

SQLite, PostgreSQL and the in-memory store always run. EventStoreDB runs when ``ESDB_URI`` points at
a server and is skipped, with that reason, otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared.domain.events import Actor, NewEvent, RecordedEvent
from shared.eventstore import (
    ConcurrencyError,
    EventIdConflict,
    EventStore,
    StreamState,
    open_event_store,
)

ADAPTERS = ["sqlite", "postgres", "esdb", "memory"]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[EventStore]:
    store = await open_event_store(f"sqlite:///{tmp_path}/events.db")
    yield store
    await store.close()


@pytest.fixture
async def postgres_store(postgres_url: str) -> AsyncIterator[EventStore]:
    store = await open_event_store(postgres_url)
    yield store
    await store.close()


@pytest.fixture
async def memory_store() -> AsyncIterator[EventStore]:
    store = await open_event_store("memory://")
    yield store
    await store.close()


@pytest.fixture
async def esdb_store() -> AsyncIterator[EventStore]:
    uri = os.environ.get("ESDB_URI")
    if not uri:
        pytest.skip("EventStoreDB contract run needs ESDB_URI (no server can be installed here)")
    from shared.eventstore.esdb import EsdbEventStore

    store = await EsdbEventStore.open(uri, prefix=f"t{uuid.uuid4().hex[:8]}-")
    yield store
    await store.close()


@pytest.fixture(params=ADAPTERS)
def store(request: pytest.FixtureRequest) -> EventStore:
    """The same tests, once per adapter."""
    adapter: EventStore = request.getfixturevalue(f"{request.param}_store")
    return adapter


def event(n: int = 0, type_: str = "ThingHappened", **data: object) -> NewEvent:
    return NewEvent(type=type_, data={"n": n, **data})


async def test_no_stream_creates_and_then_conflicts(store: EventStore) -> None:
    result = await store.append("order-1", [event(1), event(2)], StreamState.NO_STREAM)
    assert result.stream_version == 2
    with pytest.raises(ConcurrencyError) as caught:
        await store.append("order-1", [event(3)], StreamState.NO_STREAM)
    assert caught.value.actual == 2
    assert [e.data["n"] for e in await store.read_stream("order-1")] == [1, 2]


async def test_exact_version_appends_or_conflicts_writing_nothing(store: EventStore) -> None:
    await store.append("order-2", [event(1)], StreamState.NO_STREAM)
    ok = await store.append("order-2", [event(2), event(3)], expected_version=1)
    assert ok.stream_version == 3
    before = await store.head_position()
    with pytest.raises(ConcurrencyError) as caught:
        await store.append("order-2", [event(4), event(5), event(6)], expected_version=2)
    assert caught.value.actual == 3 and caught.value.expected == 2
    with pytest.raises(ConcurrencyError):
        await store.append("order-new", [event(1), event(2)], expected_version=1)
    assert [e.data["n"] for e in await store.read_stream("order-2")] == [1, 2, 3]
    assert await store.read_stream("order-new") == []
    assert await store.head_position() == before


async def test_any_version_always_appends(store: EventStore) -> None:
    first = await store.append("order-3", [event(1)])
    second = await store.append("order-3", [event(2)], StreamState.ANY)
    assert (first.stream_version, second.stream_version) == (1, 2)
    assert second.position > first.position


async def test_exact_version_below_one_is_rejected(store: EventStore) -> None:
    with pytest.raises(ValueError):
        await store.append("order-4", [event()], expected_version=0)


async def test_resending_the_same_event_ids_is_not_a_second_write(store: EventStore) -> None:
    batch = [event(1), event(2)]
    first = await store.append("order-5", batch, StreamState.NO_STREAM)
    again = await store.append("order-5", batch, StreamState.NO_STREAM)
    assert again == first
    assert len(await store.read_stream("order-5")) == 2


async def test_reusing_event_ids_elsewhere_is_a_typed_error(store: EventStore) -> None:
    stored = event(1)
    await store.append("order-6", [stored])
    with pytest.raises(EventIdConflict):
        await store.append("order-7", [stored])
    with pytest.raises(EventIdConflict):
        await store.append("order-6", [stored, event(2)])
    assert await store.read_stream("order-7") == []
    assert len(await store.read_stream("order-6")) == 1


async def test_the_envelope_round_trips(store: EventStore) -> None:
    correlation, causation = uuid.uuid4(), uuid.uuid4()
    occurred = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=3)))
    sent = NewEvent(
        type="TicketOpened",
        schema_version=2,
        data={"subject": "Сервер не отвечает ✓", "nested": {"list": [1, 2.5, None, True]}},
        occurred_at=occurred,
        correlation_id=correlation,
        causation_id=causation,
        actor=Actor(id="c-1", kind="client", impersonator_id="s-9"),
    )
    result = await store.append("ticket-1", [sent], StreamState.NO_STREAM)
    [got] = await store.read_stream("ticket-1")
    assert got.event_id == sent.event_id
    assert (got.stream, got.stream_version, got.position) == ("ticket-1", 1, result.position)
    assert (got.type, got.schema_version, got.data) == (sent.type, 2, sent.data)
    assert got.occurred_at == occurred and got.occurred_at.utcoffset() is not None
    assert (got.correlation_id, got.causation_id) == (correlation, causation)
    assert got.actor == Actor(id="c-1", kind="client", impersonator_id="s-9")
    assert RecordedEvent.from_json(got.to_json()) == got


async def test_read_stream_from_version_and_limit(store: EventStore) -> None:
    await store.append("order-8", [event(i) for i in range(1, 6)])
    tail = await store.read_stream("order-8", from_version=3)
    assert [e.stream_version for e in tail] == [3, 4, 5]
    assert [e.stream_version for e in await store.read_stream("order-8", 2, limit=2)] == [2, 3]
    assert await store.read_stream("nobody") == []
    assert await store.stream_version("order-8") == 5
    assert await store.stream_version("nobody") == 0


async def test_read_all_follows_the_global_order_from_a_position(store: EventStore) -> None:
    for i in range(5):
        await store.append(f"order-9-{i}", [event(i, step="a"), event(i, step="b")])
    everything = await store.read_all(0, limit=100)
    assert len(everything) == 10
    positions = [e.position for e in everything]
    assert positions == sorted(set(positions))
    middle = positions[4]
    assert [e.position for e in await store.read_all(middle, limit=100)] == positions[5:]
    assert [e.position for e in await store.read_all(middle, limit=2)] == positions[5:7]
    assert await store.read_all(positions[-1]) == []
    assert await store.head_position() == positions[-1]
    assert await store.count() == 10


async def test_read_part_splits_the_log_by_stream_up_to_a_position(store: EventStore) -> None:
    """What a rebuild split across processes reads: parts of the streams (by bucket),
    together every event up to ``until`` once, each part in the global order, a
    stream never in two parts; and only some event types when asked."""
    for i in range(12):
        placed = event(i, "OrderPlaced") if i % 3 == 0 else event(i, step="a")
        await store.append(f"order-11-{i}", [placed, event(i, step="b")])
    until = (await store.read_all(0, limit=100))[19].position  # the last 4 are left out
    await store.append("order-11-late", [event(99)])

    async def whole(
        buckets: tuple[int, int] | None, types: frozenset[str] | None = None
    ) -> list[RecordedEvent]:
        found: list[RecordedEvent] = []
        after = 0
        while page := await store.read_part(after, until, 3, buckets=buckets, types=types):
            assert len(page) <= 3
            found += page
            after = page[-1].position
        return found

    everything = await whole(None)
    assert [e.position for e in everything] == [
        e.position for e in await store.read_all(0, limit=100) if e.position <= until
    ]
    parts = [await whole((0, 300)), await whole((300, 1000))]
    assert all(parts) and sorted(e.position for p in parts for e in p) == [
        e.position for e in everything
    ]
    assert all([e.position for e in p] == sorted(e.position for e in p) for p in parts)
    assert not {e.stream for e in parts[0]} & {e.stream for e in parts[1]}
    assert await whole(None, frozenset({"Nothing"})) == []
    assert [e.event_id for e in await whole(None, frozenset({"OrderPlaced"}))] == [
        e.event_id for e in everything if e.type == "OrderPlaced"
    ]


async def test_catch_up_subscription_turns_live(store: EventStore) -> None:
    await store.append("order-10", [event(1), event(2), event(3)])
    seen: list[int] = []
    got_all = asyncio.Event()

    async def follow() -> None:
        async for recorded in store.subscribe(after=0, batch_size=2):
            seen.append(recorded.data["n"])
            if len(seen) == 5:
                got_all.set()
                return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    assert seen == [1, 2, 3]
    await store.append("order-11", [event(4), event(5)])
    await asyncio.wait_for(got_all.wait(), timeout=10)
    assert seen == [1, 2, 3, 4, 5]
    await follower


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store two processes open (no EventStoreDB: it subscribes natively)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_another_processs_appends_wake_a_live_subscriber(shared_url: str) -> None:
    """A replica appends; this process's subscribers learn it from the one head watcher."""
    url = shared_url
    here, other = await open_event_store(url), await open_event_store(url)
    here.idle_recheck = 3600  # no fallback re-read: only the watcher can wake them
    seen: dict[int, list[int]] = {0: [], 1: []}

    async def follow(which: int) -> None:
        async for recorded in here.subscribe(after=0):
            seen[which].append(recorded.data["n"])

    followers = [asyncio.create_task(follow(i)) for i in seen]
    try:
        await other.append("order-20", [event(1)])
        await other.append("order-21", [event(2), event(3)])
        deadline = asyncio.get_running_loop().time() + 10
        while any(found != [1, 2, 3] for found in seen.values()):
            assert asyncio.get_running_loop().time() < deadline, seen
            await asyncio.sleep(0.02)
    finally:
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        await here.close()
        await other.close()


async def test_concurrent_writers_on_one_stream_have_exactly_one_winner(store: EventStore) -> None:
    await store.append("order-12", [event(0)])

    async def attempt(n: int) -> bool:
        try:
            await store.append("order-12", [event(n), event(n)], expected_version=1)
            return True
        except ConcurrencyError:
            return False

    outcomes = await asyncio.gather(*(attempt(n) for n in range(1, 9)))
    assert outcomes.count(True) == 1
    assert await store.stream_version("order-12") == 3


async def test_appends_made_together_each_get_their_own_answer(store: EventStore) -> None:
    """New streams, a retried append, a conflict and a reused id, all at once (SQLite
    and PostgreSQL write such appends together): each answers as if it were alone."""
    earlier = [event(1), event(2)]
    first = await store.append("order-20", earlier, StreamState.NO_STREAM)
    reused = event(3)
    await store.append("order-21", [reused])
    outcomes = await asyncio.gather(
        store.append("order-22", [event(4), event(5)], StreamState.NO_STREAM),
        store.append("order-20", earlier, StreamState.NO_STREAM),
        store.append("order-20", [event(6)], StreamState.NO_STREAM),
        store.append("order-23", [reused]),
        store.append("order-25", [event(7)], StreamState.ANY),
        store.append("order-24", [event(8)], StreamState.NO_STREAM),
        return_exceptions=True,
    )
    new_22, retried, conflict, reuse, new_25, new_24 = outcomes
    assert retried == first
    assert isinstance(conflict, ConcurrencyError)
    assert isinstance(reuse, EventIdConflict)
    assert not isinstance(new_22, BaseException) and new_22.stream_version == 2
    assert not isinstance(new_25, BaseException) and new_25.stream_version == 1
    assert not isinstance(new_24, BaseException) and new_24.stream_version == 1
    assert [e.data["n"] for e in await store.read_stream("order-22")] == [4, 5]
    assert [e.data["n"] for e in await store.read_stream("order-20")] == [1, 2]
    assert await store.read_stream("order-23") == []
    # Each answer's position is where its last event really is in the log.
    for stream, answer in (("order-22", new_22), ("order-25", new_25), ("order-24", new_24)):
        assert (await store.read_stream(stream))[-1].position == answer.position


WRITERS = 8
EVENTS = 5_000


async def test_live_subscriber_never_skips_under_concurrent_writers(store: EventStore) -> None:
    """8 writers append 5,000 events while a live subscriber runs: each seen once, in order."""
    rng = random.Random(42)
    plan: list[list[int]] = [[] for _ in range(WRITERS)]
    total = 0
    while total < EVENTS:
        size = rng.randint(1, 5)
        plan[total % WRITERS].append(size)
        total += size
    seen: list[RecordedEvent] = []

    async def subscriber() -> None:
        async for recorded in store.subscribe(after=0, batch_size=500):
            seen.append(recorded)

    written: set[uuid.UUID] = set()
    last_position = 0

    async def writer(w: int) -> None:
        nonlocal last_position
        for b, size in enumerate(plan[w]):
            batch = [event(i, writer=w) for i in range(size)]
            result = await store.append(f"w{w}-b{b % 7}", batch)
            last_position = max(last_position, result.position)
            written.update(e.event_id for e in batch)
            if b % 16 == 0:
                await asyncio.sleep(0)  # let the subscriber interleave with the writers

    follower = asyncio.create_task(subscriber())
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    # Wait until the subscriber has reached the last appended position...
    for _ in range(600):
        if seen and seen[-1].position >= last_position:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # ...and give a duplicate the chance to show up.
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower

    ids = [e.event_id for e in seen]
    assert len(written) == total
    assert set(ids) == written, f"{len(written - set(ids))} events skipped"
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    positions = [e.position for e in seen]
    assert all(a < b for a, b in itertools.pairwise(positions)), "not in global order"
    replay = []
    after = 0
    while page := await store.read_all(after, 1000):
        replay.extend(e.event_id for e in page)
        after = page[-1].position
    assert replay == ids
    # Per stream the versions are gapless and in order.
    by_stream: dict[str, list[int]] = {}
    for e in seen:
        by_stream.setdefault(e.stream, []).append(e.stream_version)
    assert all(v == list(range(1, len(v) + 1)) for v in by_stream.values())


def test_times_are_utc_aware() -> None:
    assert event().occurred_at.tzinfo is UTC
