"""The notifier's stream processor: it stops within a bound, whatever the broker does;
a fact whose service is away waits, a bad fact is parked; a failed batch is taken one
fact at a time; a batch is cut where the directory changes; work runs side by side."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from services.notifier.app import stream as stream_module
from services.notifier.app.ports import Unavailable
from services.notifier.app.processor import runs, together
from services.notifier.app.stream import NotifierStream
from shared.domain.events import NewEvent, RecordedEvent


class _StuckApp:
    """A faust app whose stop waits forever (a broker that never answers the leave)."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await asyncio.Event().wait()


async def _ignore(event: RecordedEvent) -> None:
    return None


async def test_a_stop_does_not_wait_on_a_broker_that_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream_module, "STOP_SECONDS", 0.2)
    stream = NotifierStream("127.0.0.1:9", [], "notifier.stream", _ignore)
    monkeypatch.setattr(stream, "build", _StuckApp)
    running = asyncio.create_task(stream.run())
    await asyncio.wait_for(stream.ready.wait(), 5)
    running.cancel()
    began = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert time.monotonic() - began < 2  # the service's stop goes on
    assert not stream.ready.is_set()


class _Parked:
    """Stands in for the dead-letter table: records what would be parked."""

    max_failures = 2

    def __init__(self) -> None:
        self.parked: list[tuple[int, str]] = []

    async def park(
        self, topic: str, partition: int, offset: int, key: object, value: object, error: Exception
    ) -> None:
        self.parked.append((offset, type(error).__name__))


class _Message:
    topic, partition, key = "t.clients.events", 0, None

    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.value = offset, value


def _fact() -> bytes:
    new = NewEvent(type="ClientRegistered", data={"client_id": "c-1"})
    return RecordedEvent(
        position=1, stream="client-c-1", stream_version=1, event_id=new.event_id,
        type=new.type, schema_version=1, occurred_at=datetime.now(UTC),
        correlation_id=None, causation_id=None, actor=new.actor, data=new.data,
    ).to_json()  # fmt: skip


async def test_a_fact_whose_service_is_away_waits_and_a_bad_fact_is_parked() -> None:
    calls: list[str] = []

    async def handle(event: RecordedEvent) -> None:
        calls.append(event.type)
        if len(calls) <= 4:  # the clients service away four times: more than max_failures
            raise Unavailable("clients answered 503")
        if len(calls) >= 6:
            raise KeyError("client_id")

    parked = _Parked()
    stream = NotifierStream(
        "127.0.0.1:9", [], "notifier.stream", handle, dead_letters=parked, first_pause=0.001
    )  # type: ignore[arg-type]
    await stream._handle_or_park(_Message(7, _fact()))
    assert len(calls) == 5 and parked.parked == []  # waited out, applied, not parked
    await stream._handle_or_park(_Message(8, _fact()))
    assert parked.parked == [(8, "KeyError")]  # the fact itself: parked after two failures
    await stream._handle_or_park(_Message(9, b"not an event"))
    assert parked.parked[-1][0] == 9  # unreadable: parked at once


def _event(kind: str, **data: object) -> RecordedEvent:
    new = NewEvent(type=kind, data=dict(data))
    return RecordedEvent(
        position=1, stream="s-1", stream_version=1, event_id=new.event_id, type=new.type,
        schema_version=1, occurred_at=datetime.now(UTC), correlation_id=None,
        causation_id=None, actor=new.actor, data=new.data,
    )  # fmt: skip


async def test_a_failed_batch_is_taken_one_fact_at_a_time_and_only_the_bad_one_parked() -> None:
    batches: list[int] = []
    handled: list[int] = []

    async def handle_batch(events: Sequence[RecordedEvent]) -> None:
        batches.append(len(events))
        raise KeyError("client_id")  # some fact of it fails

    async def handle(event: RecordedEvent) -> None:
        if event.data.get("bad"):
            raise KeyError("client_id")
        handled.append(int(str(event.data["n"])))

    parked = _Parked()
    stream = NotifierStream(
        "127.0.0.1:9",
        [],
        "notifier.stream",
        handle,
        dead_letters=parked,
        first_pause=0.001,
        handle_batch=handle_batch,
    )  # type: ignore[arg-type]
    messages = [
        _Message(n, _event("TicketMessagePosted", n=n, bad=n == 2).to_json()) for n in range(5)
    ]
    await stream._handle_batch(messages)
    assert batches == [5]
    assert handled == [0, 1, 3, 4]  # the others, in order
    assert parked.parked == [(2, "KeyError")]  # the bad one alone, after its failures
    # A batch with an unreadable message is not handed over at all: each fact alone.
    await stream._handle_batch([_Message(5, b"not an event"), _Message(6, messages[0].value)])
    assert batches == [5] and handled[-1] == 0
    assert [offset for offset, _ in parked.parked] == [2, 5]


async def test_a_batch_is_cut_after_each_fact_that_changes_the_directory() -> None:
    facts = [
        _event("TicketMessagePosted"), _event("TicketOpened"), _event("TicketMessagePosted"),
        _event("TicketMessagePosted"), _event("StaffChanged"), _event("ClientErased"),
        _event("TicketClosed"),
    ]  # fmt: skip
    assert [[e.type for e in run] for run in runs(facts)] == [
        ["TicketMessagePosted", "TicketOpened"],
        ["TicketMessagePosted", "TicketMessagePosted", "StaffChanged"],
        ["ClientErased"],
        ["TicketClosed"],
    ]


async def test_together_runs_side_by_side_and_raises_the_first_failure_as_itself() -> None:
    running = 0
    most = 0

    async def work(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return n * 2

    calls = [functools.partial(work, n) for n in range(10)]
    assert await together(calls, 3) == [n * 2 for n in range(10)]
    assert most == 3

    async def failing() -> int:
        raise Unavailable("tickets answered 503")

    with pytest.raises(Unavailable):  # not an ExceptionGroup: the stream's rules see it
        await together([*calls, failing])
