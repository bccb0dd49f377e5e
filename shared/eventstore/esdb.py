"""EventStoreDB / KurrentDB adapter (esdbclient), the production store of docker-compose.yml.

Mapping to the port: our stream versions count from 1, EventStoreDB revisions
from 0; our global position is EventStoreDB's commit position. EventStoreDB
itself never lets a subscriber skip a committed event and deduplicates
re-sent event ids, so this adapter mostly translates.

The contract suite runs against it when ``ESDB_URI`` is set; no server can be
installed on the development machines, so there it is skipped with that reason.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from esdbclient import AsyncEventStoreDBClient
from esdbclient import NewEvent as EsdbNewEvent
from esdbclient import StreamState as EsdbState
from esdbclient.exceptions import NotFound, WrongCurrentVersion

from shared.domain.events import Actor, NewEvent, RecordedEvent
from shared.eventstore.port import (
    AppendResult,
    ConcurrencyError,
    EventIdConflict,
    EventStore,
    ExpectedVersion,
    StreamState,
    validate_append,
)


def _metadata(event: NewEvent) -> bytes:
    return json.dumps(
        {
            "schema_version": event.schema_version,
            "occurred_at": event.occurred_at.isoformat(),
            "correlation_id": None if event.correlation_id is None else str(event.correlation_id),
            "causation_id": None if event.causation_id is None else str(event.causation_id),
            "actor": event.actor.to_dict(),
        }
    ).encode()


def _recorded(event: Any) -> RecordedEvent:
    meta = json.loads(event.metadata or b"{}")
    return RecordedEvent(
        position=int(event.commit_position),
        stream=event.stream_name,
        stream_version=int(event.stream_position) + 1,
        event_id=uuid.UUID(str(event.id)),
        type=event.type,
        schema_version=int(meta.get("schema_version", 1)),
        occurred_at=datetime.fromisoformat(meta["occurred_at"]),
        correlation_id=uuid.UUID(meta["correlation_id"]) if meta.get("correlation_id") else None,
        causation_id=uuid.UUID(meta["causation_id"]) if meta.get("causation_id") else None,
        actor=Actor.from_dict(meta.get("actor")),
        data=json.loads(event.data),
    )


class EsdbEventStore(EventStore):
    """Event store on an EventStoreDB / KurrentDB server (``esdb://`` URL)."""

    def __init__(self, client: AsyncEventStoreDBClient, prefix: str = "") -> None:
        super().__init__()
        self._client = client
        # A prefix keeps test runs (and services sharing one server) apart.
        self._prefix = prefix

    @classmethod
    async def open(cls, uri: str, prefix: str = "") -> EsdbEventStore:
        client = AsyncEventStoreDBClient(uri=uri)
        await client.connect()
        return cls(client, prefix)

    async def close(self) -> None:
        await self._stop_watching()
        await self._client.close()

    def _name(self, stream: str) -> str:
        return self._prefix + stream

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        validate_append(stream, events, expected_version)
        current: int | EsdbState
        if expected_version is StreamState.ANY:
            current = EsdbState.ANY
        elif expected_version is StreamState.NO_STREAM:
            current = EsdbState.NO_STREAM
        else:
            current = expected_version - 1
        new = [
            EsdbNewEvent(
                id=e.event_id,
                type=e.type,
                data=json.dumps(e.data, ensure_ascii=False).encode(),
                metadata=_metadata(e),
                content_type="application/json",
            )
            for e in events
        ]
        try:
            await self._client.append_to_stream(
                self._name(stream), current_version=current, events=new
            )
        except WrongCurrentVersion:
            existing = await self._find(stream, [e.event_id for e in events])
            if existing:
                return existing
            raise ConcurrencyError(
                stream, expected_version, await self.stream_version(stream)
            ) from None
        # EventStoreDB answers a re-sent append with success; read back what is stored.
        stored = await self._find(stream, [e.event_id for e in events])
        if stored is None:
            raise EventIdConflict(f"event ids of this append are stored elsewhere than {stream!r}")
        self._notify_appended(stored.position, len(events))
        return stored

    async def _find(self, stream: str, ids: list[uuid.UUID]) -> AppendResult | None:
        recorded = await self.read_stream(stream)
        by_id = {e.event_id: e for e in recorded}
        if all(i in by_id for i in ids):
            last = by_id[ids[-1]]
            return AppendResult(stream_version=last.stream_version, position=last.position)
        return None

    async def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        kwargs: dict[str, Any] = {"stream_position": from_version - 1}
        if limit is not None:
            kwargs["limit"] = limit
        try:
            response = await self._client.read_stream(self._name(stream), **kwargs)
            events = [_recorded(e) async for e in response]
        except NotFound:
            return []
        return [self._strip(e) for e in events]

    def _strip(self, event: RecordedEvent) -> RecordedEvent:
        if not self._prefix:
            return event
        return event._replace(stream=event.stream[len(self._prefix) :])

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        response = await self._client.read_all(
            commit_position=after or None,
            limit=limit + 1,
            filter_include=(f"^{re.escape(self._prefix)}.*",) if self._prefix else (),
            filter_by_stream_name=bool(self._prefix),
        )
        events = [_recorded(e) async for e in response]
        return [self._strip(e) for e in events if e.position > after][:limit]

    async def subscribe(
        self, after: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[RecordedEvent]:
        subscription = await self._client.subscribe_to_all(
            commit_position=after or None,
            filter_include=(f"^{re.escape(self._prefix)}.*",) if self._prefix else (),
            filter_by_stream_name=bool(self._prefix),
        )
        async for event in subscription:
            recorded = _recorded(event)
            if recorded.position > after:
                yield self._strip(recorded)

    async def stream_version(self, stream: str) -> int:
        try:
            version = await self._client.get_current_version(self._name(stream))
        except NotFound:
            return 0
        return 0 if version is EsdbState.NO_STREAM else int(version) + 1

    async def head_position(self) -> int:
        return int(await self._client.get_commit_position())

    async def count(self) -> int:
        total = 0
        position = 0
        while page := await self.read_all(position, 5000):
            total += len(page)
            position = page[-1].position
        return total
