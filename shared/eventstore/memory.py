"""In-memory adapter (``memory://``): for tests of application rules only.

Never a production store: it holds the log in this process's memory, so it is
lost when the process ends and no other process (replica, relay, rebuild) can
read it. What it is for: service-layer tests that run a context's application
objects without a database server, in milliseconds per command.

It keeps every rule of the port, held by the same contract suite
(``tests/contract/test_event_store.py``) as the SQLite, PostgreSQL and
EventStoreDB adapters:

* an append is atomic and checks the expected version (exact from 1, no-stream,
  any) in the same step as it writes, so of concurrent writers on one stream
  exactly one wins and the others get a typed ``ConcurrencyError`` with nothing
  written;
* re-sending the same ``event_id``s returns the first result and writes nothing;
  ids stored before, but not as this same append, are an ``EventIdConflict``;
* positions are dense (1, 2, 3...) and handed out in the order appends
  complete, so ``read_all`` returns every event at once and a subscriber that
  follows positions never skips one;
* events are stored as their JSON, as the other adapters store them: what a
  reader gets is a fresh copy, never an object the writer (or another reader)
  can still change, and data that would not survive a real store fails here too.

Every operation yields to the event loop once before it touches the log, as a
round trip to a real store would, so concurrent commands in a test interleave
(load, load, decide, decide, append, append) instead of running one after the other.
The catch-up subscription is the port's own (``subscribe_pages``): appends wake
subscribers through ``_notify_appended``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import orjson

from shared.domain.events import NewEvent, RecordedEvent
from shared.eventstore.port import (
    AppendResult,
    EventIdConflict,
    EventStore,
    ExpectedVersion,
    StreamState,
    check_expected,
    validate_append,
)


class MemoryEventStore(EventStore):
    """The log as a list in memory; see the module docstring for the rules it keeps."""

    def __init__(self) -> None:
        super().__init__()
        # The event at position p is _log[p - 1], its data as JSON beside it.
        self._log: list[tuple[RecordedEvent, bytes]] = []
        self._streams: dict[str, list[int]] = {}  # stream → positions, in stream order
        self._positions: dict[uuid.UUID, int] = {}  # event id → position
        self._closed = False

    @classmethod
    async def open(cls, url: str = "memory://") -> MemoryEventStore:
        if not url.startswith("memory://"):
            raise ValueError(f"not a memory URL: {url!r}")
        return cls()

    async def close(self) -> None:
        await self._stop_watching()
        self._closed = True

    async def _round_trip(self) -> None:
        """What a call to a real store costs the caller: a turn of the event loop."""
        if self._closed:
            raise RuntimeError("the memory event store is closed")
        await asyncio.sleep(0)

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        validate_append(stream, events, expected_version)
        payloads = [orjson.dumps(e.data) for e in events]  # fails before anything is written
        await self._round_trip()
        # From here to the end no await: checking and writing are one step.
        ids = [e.event_id for e in events]
        if any(i in self._positions for i in ids):
            return self._duplicate_result(stream, ids)
        current = len(self._streams.get(stream, ()))
        check_expected(stream, expected_version, current)
        for offset, (sent, payload) in enumerate(zip(events, payloads, strict=True)):
            position = len(self._log) + 1
            recorded = RecordedEvent(
                position=position,
                stream=stream,
                stream_version=current + offset + 1,
                event_id=sent.event_id,
                type=sent.type,
                schema_version=sent.schema_version,
                occurred_at=sent.occurred_at,
                correlation_id=sent.correlation_id,
                causation_id=sent.causation_id,
                actor=sent.actor,
                data={},
            )
            self._log.append((recorded, payload))
            self._streams.setdefault(stream, []).append(position)
            self._positions[sent.event_id] = position
        result = AppendResult(stream_version=current + len(events), position=len(self._log))
        self._notify_appended(result.position, len(events))
        return result

    def _duplicate_result(self, stream: str, ids: list[uuid.UUID]) -> AppendResult:
        """The first result of this same append, or ``EventIdConflict`` if it was not one."""
        stored = sorted(self._positions[i] for i in ids if i in self._positions)
        rows = [self._log[p - 1][0] for p in stored]
        versions = [r.stream_version for r in rows]
        same_append = (
            [r.event_id for r in rows] == ids
            and all(r.stream == stream for r in rows)
            and versions == list(range(versions[0], versions[0] + len(ids)))
        )
        if not same_append:
            raise EventIdConflict(
                f"{len(rows)} of {len(ids)} event ids already exist, "
                f"not as this append to {stream!r}"
            )
        return AppendResult(stream_version=versions[-1], position=rows[-1].position)

    def _read(self, position: int) -> RecordedEvent:
        recorded, payload = self._log[position - 1]
        return recorded._replace(data=orjson.loads(payload))

    async def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        await self._round_trip()
        positions = self._streams.get(stream, [])[max(from_version, 1) - 1 :]
        if limit is not None:
            positions = positions[: max(limit, 0)]
        return [self._read(p) for p in positions]

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        await self._round_trip()
        first = max(after, 0)
        return [self._read(p) for p in range(first + 1, min(first + limit, len(self._log)) + 1)]

    async def stream_version(self, stream: str) -> int:
        await self._round_trip()
        return len(self._streams.get(stream, ()))

    async def head_position(self) -> int:
        await self._round_trip()
        return len(self._log)

    async def count(self) -> int:
        await self._round_trip()
        return len(self._log)
