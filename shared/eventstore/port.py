"""The event-store port: what every adapter (SQLite, PostgreSQL, EventStoreDB) promises.

Rules the shared contract suite (tests/contract) holds every adapter to:

1. Appends to one stream are atomic and totally ordered; a conflict writes nothing.
2. A subscriber to the global order never skips an event, even when concurrent
   transactions commit out of order.
3. Re-sending the same ``event_id``s is not a second write: the first result comes back.

Stream versions count from 1 (the first event of a stream has version 1).
Global positions are strictly increasing in the global order but need not be
dense: a failed append may leave a gap.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from prometheus_client import Counter

from shared.domain.events import NewEvent, RecordedEvent

# A re-sent (idempotent) append counts again on SQLite and EventStoreDB, which do
# not tell it from a first one.
APPENDED = Counter("events_appended_total", "Events this process appended to its store")


class StreamState(enum.Enum):
    """Expected versions that are not a number."""

    ANY = "any"
    NO_STREAM = "no_stream"


ExpectedVersion = int | StreamState


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append landed: the stream's new version and the last event's global position."""

    stream_version: int
    position: int


class EventStoreError(Exception):
    """Base of the typed errors the port raises."""


class ConcurrencyError(EventStoreError):
    """The stream was not at the expected version; nothing was written."""

    def __init__(self, stream: str, expected: ExpectedVersion, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = expected.value if isinstance(expected, StreamState) else expected
        super().__init__(f"stream {stream!r} is at version {actual}, expected {shown}")


class EventIdConflict(EventStoreError):
    """Some of these event ids were already written, but not as this same append."""


MAX_EVENTS_PER_APPEND = 10_000
LOCAL_RETRY_SECONDS = 0.002


def check_expected(stream: str, expected: ExpectedVersion, current: int) -> None:
    """Raise ``ConcurrencyError`` unless ``current`` satisfies ``expected`` (0 = no stream)."""
    if expected is StreamState.ANY:
        return
    if expected is StreamState.NO_STREAM:
        if current != 0:
            raise ConcurrencyError(stream, expected, current)
        return
    if expected < 1 or current != expected:
        raise ConcurrencyError(stream, expected, current)


def validate_append(
    stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
) -> None:
    """What every adapter refuses before it writes anything (one rule, four adapters)."""
    if isinstance(expected_version, int) and expected_version < 1:
        raise ValueError("an exact expected version counts from 1")
    if not stream:
        raise ValueError("stream must not be empty")
    if not events:
        raise ValueError("append needs at least one event")
    if len(events) > MAX_EVENTS_PER_APPEND:
        raise ValueError(f"at most {MAX_EVENTS_PER_APPEND} events per append")
    if len({e.event_id for e in events}) != len(events):
        raise EventIdConflict("the same event_id appears twice in one append")


class EventStore(abc.ABC):
    """Async port of an event store. Adapters implement the abstract methods.

    ``subscribe`` is built here from ``read_all`` plus a wake-up: appends made by
    this process wake subscribers at once; appends of other processes (replicas
    sharing the store) are seen by one watcher per store, which polls the head
    every ``poll_interval`` and wakes every subscriber of this process when it
    moves. An idle subscriber costs nothing but a re-read every
    ``idle_recheck`` seconds (a safety net, should a wake-up ever be missed).
    """

    poll_interval: float = 0.05
    idle_recheck: float = 1.0

    def __init__(self) -> None:
        self._appended = asyncio.Event()
        # The last position this process appended; a subscriber behind it knows
        # there is more even when a read finds nothing yet (see subscribe_pages).
        self._last_local_position = 0
        self._watcher: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        """Append atomically, or write nothing and raise a typed error.

        ``ConcurrencyError`` when the stream is not at ``expected_version``;
        ``EventIdConflict`` when event ids were stored before, but not by this append.
        """

    @abc.abstractmethod
    async def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        """Events of one stream from ``from_version`` on, in stream order; [] when none."""

    @abc.abstractmethod
    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events of the global order with ``position > after``.

        Only events that can no longer be preceded by a concurrent commit are
        returned, so a reader that checkpoints the last position never skips one.
        """

    async def read_part(
        self,
        after: int,
        until: int,
        limit: int = 1000,
        *,
        buckets: tuple[int, int] | None = None,
        types: frozenset[str] | None = None,
    ) -> list[RecordedEvent]:
        """Up to ``limit`` events with ``after < position <= until`` (a position
        ``head_position`` gave, so nothing before it is still to commit), in order,
        only of streams whose bucket is in ``buckets`` (``(first, end)``, of
        ``STREAM_BUCKETS`` by a hash of the stream) and only of ``types`` when
        given; [] once none is left. What a rebuild split across processes reads.

        This default filters ``read_all`` pages; an adapter may filter where it stores.
        """
        found: list[RecordedEvent] = []
        while len(found) < limit and after < until:
            page = await self.read_all(after, max(limit, 1000))
            if not page:
                break
            for event in page:
                if event.position > until or len(found) == limit:
                    return found
                after = event.position
                if types is not None and event.type not in types:
                    continue
                if buckets is None or buckets[0] <= stream_bucket(event.stream) < buckets[1]:
                    found.append(event)
        return found

    @abc.abstractmethod
    async def stream_version(self, stream: str) -> int:
        """Current version of a stream; 0 when it does not exist."""

    @abc.abstractmethod
    async def head_position(self) -> int:
        """Position of the last event ``read_all`` can return now; 0 when empty."""

    @abc.abstractmethod
    async def count(self) -> int:
        """How many events the store holds (for progress bars)."""

    async def close(self) -> None:  # noqa: B027 - adapters without connections need nothing
        """Release connections."""

    def _notify_appended(self, position: int = 0, count: int = 0) -> None:
        """Wake the subscribers; ``count`` events were appended by this process."""
        if count:
            APPENDED.inc(count)
        # Swap in a fresh event so that no subscriber has to clear a shared one
        # (clearing would lose a wake-up for a subscriber between read and wait).
        self._last_local_position = max(self._last_local_position, position)
        appended, self._appended = self._appended, asyncio.Event()
        appended.set()

    async def _wait_for_more(self, appended: asyncio.Event) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch_head(), name="event-store:head")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(appended.wait(), timeout=self.idle_recheck)

    async def _watch_head(self) -> None:
        """Wake this process's subscribers when the head moves (others' appends)."""
        seen = -1
        while True:
            try:
                head = await self.head_position()
            except Exception:
                # Closed or unreachable: subscribers re-read by themselves, and the
                # next one to wait starts a new watcher.
                return
            if head != seen:
                seen = head
                self._notify_appended()
            await asyncio.sleep(self.poll_interval)

    async def _stop_watching(self) -> None:
        """Adapters call this first in ``close``."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
            self._watcher = None

    async def subscribe_pages(
        self, after: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Catch-up subscription in pages: all events after ``after``, then live ones, forever.

        A page is whatever is readable at once (up to ``batch_size``), so a
        consumer can handle each page in one transaction.
        """
        position = after
        while True:
            appended = self._appended
            page = await self.read_all(position, batch_size)
            if page:
                yield page
                position = page[-1].position
            if len(page) < batch_size:
                if position < self._last_local_position:
                    # Our own append has committed but is not readable yet: an older
                    # transaction still runs (the horizon). It will be in moments.
                    await asyncio.sleep(LOCAL_RETRY_SECONDS)
                    continue
                await self._wait_for_more(appended)

    async def subscribe(
        self, after: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[RecordedEvent]:
        """Catch-up subscription, one event at a time."""
        async for page in self.subscribe_pages(after, batch_size):
            for event in page:
                yield event

    async def __aenter__(self) -> EventStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


STREAM_BUCKETS = 1000


def stream_bucket(stream: str) -> int:
    """Which of ``STREAM_BUCKETS`` buckets ``stream`` falls in (``EventStore.read_part``;
    an adapter that filters where it stores may hash otherwise)."""
    return zlib.crc32(stream.encode()) % STREAM_BUCKETS
