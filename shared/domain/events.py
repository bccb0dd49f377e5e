"""Events: the envelope of DESIGN §3, typed payload models in a registry, upcasting.

Three shapes, each for one job:

* ``DomainEvent`` – a pydantic model per event type; what aggregates return.
* ``NewEvent`` – what the application layer hands to the event store.
* ``RecordedEvent`` – what the store gives back: the full envelope with its
  stream version and global position. A plain slotted dataclass, because the
  store reads hundreds of thousands of them per second; payloads are validated
  into ``DomainEvent`` models only when a reader asks (``EventRegistry.decode``).

Old schema versions are upcast on read by registered functions and are never
rewritten in the store.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict

from shared.observability import causation

PrincipalKind = Literal["staff", "client", "system"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused an event: a principal and, when impersonating, the staff member behind it."""

    id: str
    kind: PrincipalKind
    impersonator_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "impersonator_id": self.impersonator_id}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Actor:
        if not raw:
            return SYSTEM
        return cls(id=str(raw["id"]), kind=raw["kind"], impersonator_id=raw.get("impersonator_id"))


SYSTEM = Actor(id="system", kind="system")


@functools.lru_cache(maxsize=4096)
def actor_to_json(actor: Actor) -> str:
    """A stored actor's JSON; cached like ``actor_from_json``."""
    return orjson.dumps(actor.to_dict()).decode()


@functools.lru_cache(maxsize=4096)
def actor_from_json(raw: str | bytes) -> Actor:
    """Parse a stored actor; cached, because the same few principals write most events."""
    return Actor.from_dict(orjson.loads(raw))


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended; ``event_id`` makes re-sending it idempotent."""

    type: str
    data: dict[str, Any]
    schema_version: int = 1
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    occurred_at: datetime = field(default_factory=utcnow)
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    actor: Actor = SYSTEM


class RecordedEvent(NamedTuple):
    """An event as stored: the envelope of DESIGN §3 plus its global ``position``.

    A named tuple rather than a frozen dataclass: immutable all the same, and
    several times cheaper to build, which is what a catch-up read spends on.
    """

    position: int
    stream: str
    stream_version: int
    event_id: uuid.UUID
    type: str
    schema_version: int
    occurred_at: datetime
    correlation_id: uuid.UUID | None
    causation_id: uuid.UUID | None
    actor: Actor
    data: dict[str, Any]
    # The publisher's signature over ``canonical_bytes`` (base64), added by a relay that
    # signs (identity's: ``shared.messaging.signatures``); never stored in the log.
    signature: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready envelope, as published on the topics."""
        envelope = self._unsigned_dict()
        if self.signature is not None:
            envelope["signature"] = self.signature
        return envelope

    def canonical_bytes(self) -> bytes:
        """What a signature covers: the envelope without it, keys sorted, the time in UTC.

        The same bytes on both sides of the broker: an envelope read back with
        ``from_json`` gives the bytes its publisher signed (the time is written with
        its offset, and ``from_dict`` reads a time without one as UTC).
        """
        envelope = self._unsigned_dict()
        envelope["occurred_at"] = _parse_datetime(self.occurred_at).isoformat()
        return orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS)

    def _unsigned_dict(self) -> dict[str, Any]:
        return {
            "event_id": str(self.event_id),
            "type": self.type,
            "schema_version": self.schema_version,
            "stream": self.stream,
            "stream_version": self.stream_version,
            "position": self.position,
            "occurred_at": self.occurred_at.isoformat(),
            "correlation_id": _str_or_none(self.correlation_id),
            "causation_id": _str_or_none(self.causation_id),
            "actor": self.actor.to_dict(),
            "data": self.data,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RecordedEvent:
        return cls(
            position=int(raw["position"]),
            stream=str(raw["stream"]),
            stream_version=int(raw["stream_version"]),
            event_id=uuid.UUID(str(raw["event_id"])),
            type=str(raw["type"]),
            schema_version=int(raw["schema_version"]),
            occurred_at=_parse_datetime(raw["occurred_at"]),
            correlation_id=_uuid_or_none(raw.get("correlation_id")),
            causation_id=_uuid_or_none(raw.get("causation_id")),
            actor=Actor.from_dict(raw.get("actor")),
            data=dict(raw["data"]),
            signature=_str_or_none(raw.get("signature")),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> RecordedEvent:
        return cls.from_dict(orjson.loads(raw))


def _str_or_none(value: uuid.UUID | str | None) -> str | None:
    return None if value is None else str(value)


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


def _parse_datetime(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class LocalizedText(BaseModel):
    """A text in English (required) and Russian (optional, empty: show the English one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    en: str
    ru: str = ""

    def in_language(self, language: str) -> str:
        return (self.ru if language == "ru" else "") or self.en


def check_changed(
    event: BaseModel,
    id_field: str,
    changed: list[str],
    nullable: set[str],
    require_some: bool = False,
) -> None:
    """A change event sets exactly the fields it lists; the others stay None.

    For the ``model_validator`` of events like ``DepartmentChanged``: ``nullable``
    fields may be listed with None (cleared); ``require_some``: an empty list is wrong.
    """
    for name in type(event).model_fields:
        if name in ("changed", id_field):
            continue
        value = getattr(event, name)
        if name in changed and value is None and name not in nullable:
            raise ValueError(f"{name} is listed as changed but has no value")
        if name not in changed and value is not None:
            raise ValueError(f"{name} has a value but is not listed as changed")
    if require_some and not changed:
        raise ValueError("changed must list each changed field once")
    if len(set(changed)) != len(changed):
        raise ValueError("changed lists a field twice")


class DomainEvent(BaseModel):
    """Base of every event payload model. Subclasses set ``event_type`` and ``schema_version``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


E = TypeVar("E", bound=type[DomainEvent])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    """A stored event whose type no model is registered for."""


class EventRegistry:
    """Maps event type names to their current payload model and upcasters from older versions."""

    def __init__(self) -> None:
        self._models: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, model: E) -> E:
        """Class decorator: make ``model`` the current schema of its ``event_type``."""
        name = model.event_type
        if name in self._models and self._models[name] is not model:
            raise ValueError(f"event type {name!r} is already registered")
        self._models[name] = model
        return model

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: a function turning ``from_version`` payloads into ``from_version + 1``."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return decorate

    def model(self, event_type: str) -> type[DomainEvent]:
        try:
            return self._models[event_type]
        except KeyError:
            raise UnknownEventType(event_type) from None

    def models(self) -> dict[str, type[DomainEvent]]:
        return dict(self._models)

    def upcast(self, event_type: str, schema_version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Bring a payload from its stored schema version to the current one."""
        target = self.model(event_type).schema_version
        version = schema_version
        while version < target:
            step = self._upcasters.get((event_type, version))
            if step is None:
                raise UnknownEventType(f"no upcaster for {event_type} v{version} -> v{version + 1}")
            data = step(dict(data))
            version += 1
        if version > target:
            raise UnknownEventType(
                f"{event_type} v{schema_version} is newer than this code (v{target})"
            )
        return data

    def decode(self, event: RecordedEvent) -> DomainEvent:
        """The typed, current-version payload of a stored event."""
        return self.decode_data(event.type, event.schema_version, event.data)

    def decode_data(
        self, event_type: str, schema_version: int, data: dict[str, Any]
    ) -> DomainEvent:
        """``decode`` for a stored payload given apart from its envelope."""
        model = self.model(event_type)
        if schema_version != model.schema_version:
            data = self.upcast(event_type, schema_version, data)
        return model.model_validate(data)

    def encode(
        self,
        payload: DomainEvent,
        *,
        actor: Actor = SYSTEM,
        correlation_id: uuid.UUID | None = None,
        causation_id: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
    ) -> NewEvent:
        """Wrap a payload model into a ``NewEvent`` ready to append."""
        if type(payload) is not self._models.get(payload.event_type):
            raise UnknownEventType(f"{type(payload).__name__} is not registered")
        cause = causation.current()  # the request's or the handled event's, if any
        if cause is not None:
            correlation_id = correlation_id or cause.correlation_id
            causation_id = causation_id or cause.causation_id
        return NewEvent(
            type=payload.event_type,
            schema_version=payload.schema_version,
            data=payload.model_dump(mode="json"),
            event_id=event_id or uuid.uuid4(),
            correlation_id=correlation_id,
            causation_id=causation_id,
            actor=actor,
        )

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """JSON Schema of every registered payload, for other teams consuming the topics."""
        return {name: model.model_json_schema() for name, model in sorted(self._models.items())}
