"""The application layer's one move: load an aggregate, let it decide, append what it decided."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from shared.domain import Aggregate
from shared.events import SYSTEM, Actor, DomainEvent, EventRegistry, RecordedEvent
from shared.eventstore import AppendResult, EventStore, StreamState

A = TypeVar("A", bound=Aggregate)


async def load(store: EventStore, registry: EventRegistry, stream: str, new: Callable[[], A]) -> A:
    """The aggregate as its stream says it is now (a fresh one when there is no stream)."""
    return rebuild(await store.read_stream(stream), registry, new)


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
) -> AppendResult | None:
    """Append what an aggregate decided, expecting the version it was loaded at.

    Returns None when it decided nothing (an idempotent command).
    """
    if not events:
        return None
    expected = loaded_version if loaded_version else StreamState.NO_STREAM
    encoded = [
        registry.encode(event, actor=actor, correlation_id=correlation_id) for event in events
    ]
    return await store.append(stream, encoded, expected)
