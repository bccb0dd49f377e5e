"""Sealing and opening personal fields (the pure half of crypto-shredding)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.domain.events import SYSTEM, DomainEvent, EventRegistry, RecordedEvent
from shared.privacy import shredding

registry = EventRegistry()


@registry.register
class Met(DomainEvent):
    event_type = "Met"
    personal_fields: ClassVar[tuple[str, ...]] = ("name",)
    subject_field: ClassVar[str] = "person_id"
    person_id: str
    name: str | None
    count: int


def recorded(data: dict[str, object]) -> RecordedEvent:
    return RecordedEvent(
        position=1,
        stream="person-1",
        stream_version=1,
        event_id=uuid.uuid4(),
        type="Met",
        schema_version=1,
        occurred_at=datetime.now(UTC),
        correlation_id=None,
        causation_id=None,
        actor=SYSTEM,
        data=data,
    )


def test_a_sealed_value_opens_with_its_key_and_subject_only() -> None:
    key, other = AESGCM.generate_key(bit_length=256), AESGCM.generate_key(bit_length=256)
    sealed = shredding.seal_value(key, "p1", "Alice")
    assert "Alice" not in sealed and shredding.is_sealed(sealed)
    assert shredding.open_value(key, "p1", sealed) == "Alice"
    with pytest.raises(InvalidTag):
        shredding.open_value(other, "p1", sealed)
    with pytest.raises(InvalidTag):  # moved to another subject's event
        shredding.open_value(key, "p2", sealed)


def test_sealing_twice_gives_different_ciphertexts() -> None:
    key = AESGCM.generate_key(bit_length=256)
    assert shredding.seal_value(key, "p1", "Alice") != shredding.seal_value(key, "p1", "Alice")


def test_an_event_opens_to_none_once_the_key_is_gone() -> None:
    key = AESGCM.generate_key(bit_length=256)
    event = recorded({"person_id": "p1", "name": shredding.seal_value(key, "p1", "Al"), "count": 2})
    opened = shredding.open_event(registry, event, {"p1": key})
    assert isinstance(opened, Met) and opened.name == "Al"
    erased = shredding.open_event(registry, event, {})
    assert isinstance(erased, Met) and erased.name is None and erased.count == 2
    assert shredding.subjects_of(registry, [event]) == {"p1"}


upcasting = EventRegistry()


@upcasting.register
class Greeted(DomainEvent):
    """v3: v1 said ``who`` (sealed) about ``pid``; v2 renamed them; v3 upper-cased the name."""

    event_type = "Greeted"
    schema_version: ClassVar[int] = 3
    personal_fields: ClassVar[tuple[str, ...]] = ("name",)
    subject_field: ClassVar[str] = "person_id"
    person_id: str
    name: str | None


@upcasting.upcaster("Greeted", 1)
def _rename(data: dict[str, object]) -> dict[str, object]:
    return {"person_id": data.pop("pid"), "name": data.pop("who")}


@upcasting.upcaster("Greeted", 2)
def _upper(data: dict[str, object]) -> dict[str, object]:
    name = data["name"]
    return {**data, "name": name.upper() if isinstance(name, str) else name}


def test_old_schemas_open_whether_an_upcaster_renames_or_reshapes_a_sealed_field() -> None:
    key = AESGCM.generate_key(bit_length=256)
    v1 = recorded({"pid": "p1", "who": shredding.seal_value(key, "p1", "Al")})
    v1 = v1._replace(type="Greeted", schema_version=1)
    assert shredding.subjects_of(upcasting, [v1]) == {"p1"}
    opened = shredding.open_event(upcasting, v1, {"p1": key})
    assert isinstance(opened, Greeted) and (opened.person_id, opened.name) == ("p1", "AL")
    v2 = v1._replace(
        schema_version=2, data={"person_id": "p1", "name": shredding.seal_value(key, "p1", "Bo")}
    )
    assert shredding.open_event(upcasting, v2, {"p1": key}).name == "BO"  # type: ignore[attr-defined]
    assert shredding.open_event(upcasting, v2, {}).name is None  # type: ignore[attr-defined]


def test_an_event_read_once_is_opened_once_for_every_read_model_with_the_same_key() -> None:
    """What lets a service's read models share one decoding per page: the same event
    object opened again with the same key gives the same payload; opened without
    the key (erased meanwhile), or another event at the same position, is decoded
    afresh."""
    key = AESGCM.generate_key(bit_length=256)
    data = {"person_id": "p1", "name": shredding.seal_value(key, "p1", "Alice"), "count": 1}
    event = recorded(data)
    first = shredding.open_event(registry, event, {"p1": key})
    assert shredding.open_event(registry, event, {"p1": key}) is first
    assert first.name == "Alice"  # type: ignore[attr-defined]
    erased = shredding.open_event(registry, event, {})
    assert erased is not first and erased.name is None  # type: ignore[attr-defined]
    again = recorded({**data, "count": 2})  # position 1 too: another store, say
    assert shredding.open_event(registry, again, {"p1": key}).count == 2  # type: ignore[attr-defined]


def test_a_reader_that_keeps_no_personal_data_opens_nothing_and_reuses_an_opening() -> None:
    """Reports decode without keys: sealed fields are None, and no key is needed. When
    a read model before them opened the same event, that payload is reused; and their
    decoding is never handed to a read model that opens (it would lack the texts)."""
    key = AESGCM.generate_key(bit_length=256)
    data = {"person_id": "p2", "name": shredding.seal_value(key, "p2", "Bob"), "count": 1}
    event = recorded(data)
    unopened = shredding.decode_unopened(registry, event)
    assert unopened.name is None and unopened.count == 1  # type: ignore[attr-defined]
    opened = shredding.open_event(registry, event, {"p2": key})
    assert opened.name == "Bob"  # type: ignore[attr-defined]
    assert shredding.decode_unopened(registry, event) is opened


@registry.register
class Knocked(DomainEvent):
    """Personal data about somebody the context may not know (a failed login's address)."""

    event_type = "Knocked"
    personal_fields: ClassVar[tuple[str, ...]] = ("ip",)
    subject_field: ClassVar[str] = "principal_id"
    principal_id: str | None
    ip: str | None


def test_personal_data_of_nobody_known_is_sealed_under_the_anonymous_subject() -> None:
    """Never "None" as a subject id, and the same one when sealing and when opening."""
    nobody = Knocked(principal_id=None, ip="198.51.100.9")
    assert shredding.subject_of(nobody, Knocked) == shredding.ANONYMOUS
    key = AESGCM.generate_key(bit_length=256)
    stored = recorded(
        {"principal_id": None, "ip": shredding.seal_value(key, shredding.ANONYMOUS, "198.51.100.9")}
    )._replace(type="Knocked")
    assert shredding.subjects_of(registry, [stored]) == {shredding.ANONYMOUS}
    opened = shredding.open_event(registry, stored, {shredding.ANONYMOUS: key})
    assert isinstance(opened, Knocked) and opened.ip == "198.51.100.9"
