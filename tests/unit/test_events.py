"""Events: registry, upcasting on read, JSON that round-trips."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.events import (
    Actor,
    DomainEvent,
    EventRegistry,
    RecordedEvent,
    UnknownEventType,
)

registry = EventRegistry()


@registry.register
class TicketOpened(DomainEvent):
    """v3: ``title`` became ``subject`` (v2), then ``priority`` was added (v3)."""

    event_type = "TicketOpened"
    schema_version = 3
    subject: str
    department_id: str
    priority: str


@registry.upcaster("TicketOpened", 1)
def _rename_title(data: dict[str, Any]) -> dict[str, Any]:
    data["subject"] = data.pop("title")
    return data


@registry.upcaster("TicketOpened", 2)
def _default_priority(data: dict[str, Any]) -> dict[str, Any]:
    data.setdefault("priority", "normal")
    return data


def recorded(
    schema_version: int, data: dict[str, Any], type_: str = "TicketOpened"
) -> RecordedEvent:
    return RecordedEvent(
        position=7,
        stream="ticket-1",
        stream_version=1,
        event_id=uuid.uuid4(),
        type=type_,
        schema_version=schema_version,
        occurred_at=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        actor=Actor(id="s-1", kind="staff"),
        data=data,
    )


def test_old_versions_are_upcast_on_read_and_the_stored_payload_is_untouched() -> None:
    stored = recorded(1, {"title": "Server down", "department_id": "d-1"})
    decoded = registry.decode(stored)
    assert decoded == TicketOpened(subject="Server down", department_id="d-1", priority="normal")
    assert stored.data == {"title": "Server down", "department_id": "d-1"}


def test_the_current_version_is_read_as_is() -> None:
    stored = recorded(3, {"subject": "s", "department_id": "d", "priority": "high"})
    assert registry.decode(stored) == TicketOpened(subject="s", department_id="d", priority="high")


def test_a_version_newer_than_the_code_is_refused() -> None:
    with pytest.raises(UnknownEventType, match="newer"):
        registry.decode(recorded(4, {"subject": "s", "department_id": "d", "priority": "x"}))


def test_an_unknown_type_is_a_typed_error() -> None:
    with pytest.raises(UnknownEventType):
        registry.decode(recorded(1, {}, type_="NoSuchEvent"))


def test_encode_wraps_a_payload_with_its_type_version_and_actor() -> None:
    correlation = uuid.uuid4()
    new = registry.encode(
        TicketOpened(subject="s", department_id="d", priority="low"),
        actor=Actor(id="c-1", kind="client", impersonator_id="s-2"),
        correlation_id=correlation,
    )
    assert (new.type, new.schema_version) == ("TicketOpened", 3)
    assert new.data == {"subject": "s", "department_id": "d", "priority": "low"}
    assert new.actor.impersonator_id == "s-2" and new.correlation_id == correlation


def test_a_model_name_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError):

        @registry.register
        class Other(DomainEvent):
            event_type = "TicketOpened"


def test_payload_models_reject_unknown_fields() -> None:
    with pytest.raises(ValueError):
        TicketOpened.model_validate({"subject": "s", "department_id": "d", "priority": "p", "x": 1})


def test_the_envelope_round_trips_through_json() -> None:
    event = recorded(3, {"subject": "Привет ✓", "n": [1, 2.5, None], "nested": {"ok": True}})
    raw = event.to_json()
    assert RecordedEvent.from_json(raw) == event
    as_dict = event.to_dict()
    assert set(as_dict) == {
        "event_id", "type", "schema_version", "stream", "stream_version", "position",
        "occurred_at", "correlation_id", "causation_id", "actor", "data",
    }  # fmt: skip


def test_json_schemas_are_generated_for_every_registered_type() -> None:
    schemas = registry.json_schemas()
    assert schemas["TicketOpened"]["properties"]["subject"]["type"] == "string"
