"""The application layer's one move: load an aggregate, let it decide, append what it decided."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from shared.domain import Aggregate
from shared.events import SYSTEM, Actor, DomainEvent, EventRegistry, RecordedEvent
from shared.eventstore import AppendResult, EventStore, ExpectedVersion, StreamState
from shared.shredding import Sealer

A = TypeVar("A", bound=Aggregate)


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
    sealer: Sealer | None = None,
    expected: ExpectedVersion | None = None,
) -> AppendResult | None:
    """Append what an aggregate decided, expecting the version it was loaded at.

    Returns None when it decided nothing (an idempotent command). With a
    ``sealer``, personal fields are sealed with their subject's key first.
    ``expected`` overrides the version check (``StreamState.ANY`` for facts
    that do not depend on the aggregate's state).
    """
    if not events:
        return None
    if expected is None:
        expected = loaded_version if loaded_version else StreamState.NO_STREAM
    encoded = [
        registry.encode(event, actor=actor, correlation_id=correlation_id) for event in events
    ]
    if sealer is not None:
        encoded = [await sealer.seal(event) for event in encoded]
    return await store.append(stream, encoded, expected)
