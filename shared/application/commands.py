"""The application layer's one move: load an aggregate, let it decide, append what it decided.

* A command answers ``CommandAnswer`` ``{"id", "version", "position"}``: the
  aggregate, its new stream version and the global position of the last event
  written; when it decided nothing, its current version and position 0
  (``CommandAnswer.unchanged``), the one "nothing changed" answer.
* ``decide_and_append`` is the one conflict-retry policy: a command whose
  meaning does not depend on a version the caller saw is decided again on fresh
  state when another writer got there first, up to ``RETRY_ATTEMPTS`` rounds with
  a short random pause growing each round, then a typed ``Conflict``
  (``version_conflict``, a 409). A command that names the version the caller saw
  does not retry: its conflict is the caller's to resolve (``check_seen``, called
  from the decision, so every round checks it on the state it decides on).
"""

from __future__ import annotations

import asyncio
import inspect
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel

from shared.domain.aggregate import Aggregate, Conflict
from shared.domain.events import SYSTEM, Actor, DomainEvent, EventRegistry, RecordedEvent
from shared.eventstore import (
    AppendResult,
    ConcurrencyError,
    EventStore,
    ExpectedVersion,
    StreamState,
)
from shared.privacy.shredding import Sealer

A = TypeVar("A", bound=Aggregate)

# Rounds of load-decide-append before a command gives up on a busy stream: many
# writers at once (paid requests taken by a burst of tickets) need tens of rounds.
RETRY_ATTEMPTS = 50
RETRY_PAUSE_STEP = 0.002  # seconds: the pause before round n is random in [0, n * step]


class CommandAnswer(BaseModel):
    """What every command returns."""

    id: str
    version: int
    position: int

    @classmethod
    def of(cls, aggregate_id: str, result: AppendResult) -> CommandAnswer:
        return cls(id=aggregate_id, version=result.stream_version, position=result.position)

    @classmethod
    def unchanged(cls, aggregate_id: str, version: int) -> CommandAnswer:
        """A command that decided nothing: the aggregate as it is, nothing written."""
        return cls(id=aggregate_id, version=version, position=0)

    @classmethod
    def after(cls, aggregate_id: str, version: int, result: AppendResult | None) -> CommandAnswer:
        """What was written, or ``unchanged`` when ``append`` wrote nothing."""
        if result is None:
            return cls.unchanged(aggregate_id, version)
        return cls.of(aggregate_id, result)


async def load(
    store: EventStore,
    registry: EventRegistry,
    stream: str,
    new: Callable[[], A],
    *,
    sealer: Sealer | None = None,
) -> A:
    """The aggregate as its stream says it is now (a fresh one when there is no stream).

    With a ``sealer``, personal fields are opened first (None once erased).
    """
    recorded = await store.read_stream(stream)
    if sealer is None:
        return rebuild(recorded, registry, new)
    keys = await sealer.keys_for(recorded)
    aggregate = new()
    wanted = aggregate.handles or frozenset(registry.models())
    aggregate.applied(sealer.open_with(e, keys) for e in recorded if e.type in wanted)
    aggregate.version = recorded[-1].stream_version if recorded else 0
    return aggregate


def rebuild(recorded: Sequence[RecordedEvent], registry: EventRegistry, new: Callable[[], A]) -> A:
    """An aggregate from events already read; ``version`` is the stream's."""
    aggregate = new()
    wanted = aggregate.handles or frozenset(registry.models())
    aggregate.applied(registry.decode(e) for e in recorded if e.type in wanted)
    aggregate.version = recorded[-1].stream_version if recorded else 0
    return aggregate


async def append(
    store: EventStore,
    registry: EventRegistry,
    stream: str,
    events: Sequence[DomainEvent],
    loaded_version: int,
    *,
    actor: Actor = SYSTEM,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    sealer: Sealer | None = None,
    expected: ExpectedVersion | None = None,
    event_ids: Sequence[uuid.UUID] | None = None,
) -> AppendResult | None:
    """Append what an aggregate decided, expecting the version it was loaded at.

    Returns None when it decided nothing (an idempotent command). With a
    ``sealer``, personal fields are sealed with their subject's key first.
    ``expected`` overrides the version check (``StreamState.ANY`` for facts
    that do not depend on the aggregate's state). ``event_ids``: ids derived from
    the cause, so that handling the same cause again appends nothing new.
    """
    if not events:
        return None
    if expected is None:
        expected = loaded_version if loaded_version else StreamState.NO_STREAM
    ids: Sequence[uuid.UUID | None] = event_ids or [None] * len(events)
    encoded = [
        registry.encode(
            event,
            actor=actor,
            correlation_id=correlation_id,
            causation_id=causation_id,
            event_id=event_id,
        )
        for event, event_id in zip(events, ids, strict=True)
    ]
    if sealer is not None:
        encoded = [await sealer.seal(event) for event in encoded]
    return await store.append(stream, encoded, expected)


Decision = Sequence[DomainEvent] | Awaitable[Sequence[DomainEvent]]


def check_seen(stream: str, aggregate: Aggregate, expected_version: int | None) -> None:
    """A caller that names the version it saw (``expected_version``) gets 409
    ``version_conflict`` when that is no longer the aggregate's. Raised from a decision,
    ``decide_and_append`` lets it through: it never retries a conflict the caller named."""
    if expected_version is not None and expected_version != aggregate.version:
        raise ConcurrencyError(stream, expected_version, aggregate.version)


async def decide_and_append(
    store: EventStore,
    registry: EventRegistry,
    stream: str,
    new: Callable[[], A],
    decide: Callable[[A], Decision],
    *,
    answer_id: str,
    actor: Actor = SYSTEM,
    sealer: Sealer | None = None,
    loader: Callable[[], Awaitable[A]] | None = None,
    event_ids: Callable[[A, Sequence[DomainEvent]], Sequence[uuid.UUID]] | None = None,
    cause: RecordedEvent | None = None,
) -> CommandAnswer:
    """Load, decide, append at the loaded version; on a conflict, again on fresh state.

    ``decide`` may be sync or async and may raise the domain's errors (they pass
    through). ``loader`` replaces the plain ``load`` (a service that filters or
    opens events its own way); ``event_ids`` derives the events' ids from the loaded
    aggregate (see ``append``); ``cause``, another context's event the command
    answers, gives its correlation and causation. Nothing decided:
    ``CommandAnswer.unchanged``.
    """
    for attempt in range(RETRY_ATTEMPTS):
        if attempt:
            await asyncio.sleep(random.uniform(0, RETRY_PAUSE_STEP * attempt))
        if loader is not None:
            aggregate = await loader()
        else:
            aggregate = await load(store, registry, stream, new, sealer=sealer)
        decided = decide(aggregate)
        events = await decided if inspect.isawaitable(decided) else decided
        if not events:
            return CommandAnswer.unchanged(answer_id, aggregate.version)
        try:
            result = await append(
                store,
                registry,
                stream,
                events,
                aggregate.version,
                actor=actor,
                sealer=sealer,
                event_ids=event_ids(aggregate, events) if event_ids else None,
                correlation_id=cause.correlation_id if cause else None,
                causation_id=cause.event_id if cause else None,
            )
        except ConcurrencyError:
            continue
        return CommandAnswer.after(answer_id, aggregate.version, result)
    raise Conflict("version_conflict", f"{stream} kept changing; try again")
