"""The PostgreSQL store's read horizon depends on its own appends only.

See the module docstring of ``shared.eventstore.postgres``: a transaction that
is not an append of this store (a projection's batch, a consumer's inbox, another
database on the same server) must not hold back what readers see, while an
append that is still open must.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

from shared.domain.events import NewEvent, RecordedEvent
from shared.eventstore.postgres import PostgresEventStore
from tests.conftest import fresh_database


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresEventStore]:
    opened = await PostgresEventStore.open(postgres_url)
    yield opened
    await opened.close()


def _event(n: int, **data: object) -> NewEvent:
    return NewEvent(type="ThingHappened", data={"n": n, **data})


async def _begin_append(conn: asyncpg.Connection, stream: str, events: Sequence[NewEvent]) -> int:
    """Run the store's append function in a transaction left open; its last position."""
    await conn.execute("BEGIN")
    row = await conn.fetchrow(
        "SELECT status, last_position FROM events_append("
        "$1, -1, $2, $3, $4, $5, $6, $7, $8::jsonb[], $9::jsonb[])",
        stream,
        [e.event_id for e in events],
        [e.type for e in events],
        [e.schema_version for e in events],
        [datetime.now(UTC)] * len(events),
        [None] * len(events),
        [None] * len(events),
        ['{"id": "t", "kind": "system"}'] * len(events),
        [orjson.dumps(e.data).decode() for e in events],
    )
    assert row is not None and row["status"] == "ok"
    return int(row["last_position"])


async def _begin_unrelated(conn: asyncpg.Connection, sql: str) -> None:
    """A transaction that has an id (it wrote, or asked for one) and stays open."""
    await conn.execute("BEGIN")
    await conn.execute(sql)
    assert await conn.fetchval("SELECT pg_current_xact_id_if_assigned()") is not None


async def _read_everything(store: PostgresEventStore) -> list[RecordedEvent]:
    seen: list[RecordedEvent] = []
    while page := await store.read_all(seen[-1].position if seen else 0, 1000):
        seen.extend(page)
    return seen


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def _subscriber(store: PostgresEventStore) -> AsyncIterator[list[RecordedEvent]]:
    seen: list[RecordedEvent] = []

    async def follow() -> None:
        async for recorded in store.subscribe(after=0, batch_size=500):
            seen.append(recorded)

    task = asyncio.create_task(follow())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_unrelated_open_transactions_do_not_hold_back_appends(
    store: PostgresEventStore, postgres_url: str
) -> None:
    """A projection's open batch, another database's open transaction and an append
    left open in another database: none of them delays appends made after them."""
    async with fresh_database() as other_url:
        other_store = await PostgresEventStore.open(other_url)
        await other_store.close()
        here = await asyncpg.connect(postgres_url)
        await here.execute("CREATE TABLE read_model (id int PRIMARY KEY)")
        elsewhere = await asyncpg.connect(other_url)
        other_append = await asyncpg.connect(other_url)
        try:
            async with _subscriber(store) as seen:
                await _begin_unrelated(
                    here, "INSERT INTO read_model SELECT generate_series(1, 500)"
                )
                await _begin_unrelated(elsewhere, "SELECT pg_current_xact_id()")
                await _begin_append(other_append, "elsewhere-1", [_event(0)])
                for batch in range(10):
                    await store.append(f"s-{batch}", [_event(i) for i in range(100)])
                # Within a short time, with all three still open:
                await _until(lambda: len(seen) == 1000, timeout=2)
                assert len(await _read_everything(store)) == 1000
                assert await store.head_position() == seen[-1].position
                for conn in (here, elsewhere, other_append):
                    assert await conn.fetchval("SELECT pg_current_xact_id_if_assigned()")
        finally:
            for conn in (here, elsewhere, other_append):
                await conn.close()


async def test_an_open_append_still_holds_back_later_appends(
    store: PostgresEventStore, postgres_url: str
) -> None:
    """No skip: while an append is open, appends after it are not readable; then all are.

    Beside it, an unrelated transaction with an id, and one that waits for the open
    append (it inserts a row with the same event id), so that ``pg_locks`` also lists
    a non-append on the append's transaction id: only the lock's owner counts.
    """
    await store.append("before", [_event(1), _event(2)])
    held = await asyncpg.connect(postgres_url)
    unrelated = await asyncpg.connect(postgres_url)
    waiter = await asyncpg.connect(postgres_url)
    try:
        async with _subscriber(store) as seen:
            held_events = [_event(3), _event(4)]
            held_position = await _begin_append(held, "held", held_events)
            await _begin_unrelated(unrelated, "SELECT pg_current_xact_id()")
            waiting = asyncio.create_task(
                waiter.execute(
                    "INSERT INTO events (position, event_id, stream, stream_version, type, "
                    "schema_version, occurred_at, actor, data) "
                    "VALUES (-1, $1, 'copy', 1, 't', 1, now(), '{}', '{}')",
                    held_events[0].event_id,
                )
            )
            for _ in range(500):  # until it waits for the open append
                if await unrelated.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' "
                    "AND NOT granted AND pid = $1",
                    waiter.get_server_pid(),
                ):
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the waiter never waited")
            for i in range(5):
                result = await store.append(f"after-{i}", [_event(10 + i)])
                assert result.position > held_position
            await asyncio.sleep(0.3)
            visible = await _read_everything(store)
            assert [e.stream for e in visible] == ["before", "before"]
            assert [e.stream for e in seen] == ["before", "before"]
            assert await store.head_position() == visible[-1].position
            await held.execute("COMMIT")
            with pytest.raises(asyncpg.UniqueViolationError):
                await waiting
            await _until(lambda: len(seen) == 9, timeout=2)
            order = ["before"] * 2 + ["held"] * 2 + [f"after-{i}" for i in range(5)]
            assert [e.stream for e in seen] == order
            assert [e.stream for e in await _read_everything(store)] == order
    finally:
        for conn in (held, unrelated, waiter):
            await conn.close()


async def test_no_skip_with_writers_and_unrelated_transactions(
    store: PostgresEventStore, postgres_url: str
) -> None:
    """8 writers, a live subscriber, and transactions with ids coming and going beside them
    (short and long, in this database): every event seen once, in order."""
    rng = random.Random(7)
    stop = asyncio.Event()
    setup = await asyncpg.connect(postgres_url)
    await setup.execute("CREATE TABLE read_model (id bigserial PRIMARY KEY, n int)")
    await setup.close()

    async def churn(hold: float) -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            while not stop.is_set():
                async with conn.transaction():
                    await conn.execute("INSERT INTO read_model (n) VALUES (1)")
                    await asyncio.sleep(rng.random() * hold)
        finally:
            await conn.close()

    written: set[uuid.UUID] = set()
    last_position = 0

    async def writer(w: int) -> None:
        nonlocal last_position
        for b in range(150):
            batch = [_event(i, writer=w) for i in range(rng.randint(1, 5))]
            result = await store.append(f"w{w}-{b % 5}", batch)
            last_position = max(last_position, result.position)
            written.update(e.event_id for e in batch)
            if b % 8 == 0:
                await asyncio.sleep(0)

    churners = [asyncio.create_task(churn(hold)) for hold in (0, 0, 0.002, 0.02, 0.2)]
    try:
        async with _subscriber(store) as seen:
            await asyncio.gather(*(writer(w) for w in range(8)))
            await _until(lambda: bool(seen) and seen[-1].position >= last_position, timeout=30)
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*churners)
    ids = [e.event_id for e in seen]
    assert set(ids) == written, f"{len(written - set(ids))} events skipped"
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert all(a.position < b.position for a, b in itertools.pairwise(seen))
    assert [e.event_id for e in await _read_everything(store)] == ids


async def test_transactions_open_at_start_are_waited_for_once(postgres_url: str) -> None:
    """A store reads with the cluster-wide horizon until the transactions open in its
    database when it created its schema have ended (one may run an older append body)."""
    bootstrap = await PostgresEventStore.open(postgres_url)
    await bootstrap.close()
    old = await asyncpg.connect(postgres_url)
    try:
        await _begin_unrelated(old, "SELECT pg_current_xact_id()")
        store = await PostgresEventStore.open(postgres_url)
        try:
            await store.append("s", [_event(1)])
            assert await store.read_all() == []
            await old.execute("COMMIT")
            assert [e.stream for e in await store.read_all()] == ["s"]
            # From now on an open unrelated transaction no longer matters.
            await _begin_unrelated(old, "SELECT pg_current_xact_id()")
            await store.append("s", [_event(2)])
            assert len(await store.read_all()) == 2
        finally:
            await store.close()
    finally:
        await old.close()


async def test_the_append_function_refuses_a_transaction_that_already_has_an_id(
    store: PostgresEventStore, postgres_url: str
) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("BEGIN")
        await conn.execute("SELECT pg_current_xact_id()")
        with pytest.raises(asyncpg.RaiseError, match="first write of its transaction"):
            await conn.execute(
                "SELECT events_append('s', -1, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}')"
            )
        await conn.execute("ROLLBACK")
    finally:
        await conn.close()
