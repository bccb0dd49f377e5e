"""Crypto-shredding (DESIGN §3): personal fields of events sealed with a per-subject key.

Events are immutable, yet a client who asks to be forgotten must become
unreadable in every replay. So each subject (a client) gets its own random
AES-256-GCM key, kept in the service's database beside, not inside, the event
log. Personal fields of an event are sealed with that key before the append,
travel sealed to the topic, and are opened on read. Erasure destroys the key:
from then on the stored and published ciphertext opens to nothing, while ids,
counts and amounts (never sealed) stay for reports.

An event model says which of its fields are personal and whose they are:

    class ClientRegistered(DomainEvent):
        personal_fields: ClassVar[tuple[str, ...]] = ("email", "contact_person")
        subject_field: ClassVar[str] = "client_id"

Personal fields are plain ``str | None`` in the model (a sealed value is a
string too); their format is checked by the command, before sealing.

An event whose subject field is None (a failed login for a login nobody has:
the address that tried belongs to no known subject) is sealed under the one
subject ``ANONYMOUS``: never in clear, though no erasure of a person reaches it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, LargeBinary, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import DomainEvent, EventRegistry, NewEvent, RecordedEvent
from shared.readmodel.database import ReadModelDB, UtcDateTime, among

SEALED_PREFIX = "sealed:v1:"
ANONYMOUS = "anonymous"  # the subject of personal data that names nobody known
NONCE_BYTES = 12

metadata = MetaData()

subject_keys = Table(
    "subject_keys",
    metadata,
    Column("subject_id", String(64), primary_key=True),
    Column("key", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

erased_subjects = Table(
    "erased_subjects",
    metadata,
    Column("subject_id", String(64), primary_key=True),
    Column("erased_at", UtcDateTime(), nullable=False),
)


@functools.cache
def personal_fields(model: type[DomainEvent]) -> tuple[str, ...]:
    # Cached: a missing class attribute is slow to look up on a pydantic model.
    fields: tuple[str, ...] = getattr(model, "personal_fields", ())
    return fields


def subject_of(payload: DomainEvent | dict[str, Any], model: type[DomainEvent]) -> str:
    field: str = getattr(model, "subject_field")  # noqa: B009 - set on personal models only
    value = payload[field] if isinstance(payload, dict) else getattr(payload, field)
    return ANONYMOUS if value is None else str(value)


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def seal_value(key: bytes, subject_id: str, value: str) -> str:
    """One field sealed; the subject id is bound in, so a value cannot move to another subject."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, value.encode(), subject_id.encode())
    return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def open_value(key: bytes | None, subject_id: str, value: Any) -> Any:
    """The clear value, or None when the key is gone (the subject was erased)."""
    if not is_sealed(value):
        return value
    if key is None:
        return None
    return _open(AESGCM(key), subject_id.encode(), value)


async def keys_in(conn: AsyncConnection, subject_ids: Iterable[str]) -> dict[str, bytes]:
    """Keys of the subjects that still have one, read on ``conn`` (a projection's transaction)."""
    wanted = sorted(set(subject_ids))
    if not wanted:
        return {}
    rows = await conn.execute(
        select(subject_keys.c.subject_id, subject_keys.c.key).where(
            among(conn, subject_keys.c.subject_id, wanted)
        )
    )
    return {row.subject_id: bytes(row.key) for row in rows}


def stored_subject(registry: EventRegistry, event: RecordedEvent, model: type[DomainEvent]) -> str:
    """Whose event it is, from the stored data (or the upcast data, if the subject's
    field was renamed since)."""
    field: str = getattr(model, "subject_field")  # noqa: B009 - personal models only
    if field in event.data:
        value = event.data[field]
        return ANONYMOUS if value is None else str(value)
    return subject_of(registry.upcast(event.type, event.schema_version, dict(event.data)), model)


def subjects_of(registry: EventRegistry, events: Iterable[RecordedEvent]) -> set[str]:
    """Whose keys are needed to open ``events``."""
    subjects = set()
    models = registry.models()
    for event in events:
        model = models.get(event.type)
        if model is not None and personal_fields(model):
            subjects.add(stored_subject(registry, event, model))
    return subjects


def open_stored(
    registry: EventRegistry, event: RecordedEvent, keys: Mapping[str, bytes]
) -> dict[str, Any]:
    """The stored data (not upcast) with every sealed value opened; None once erased.

    Whatever its name in the stored schema: all sealed values of an event belong to
    its one subject. So an upcaster that renames or reshapes a personal field sees
    it clear.
    """
    subject = stored_subject(registry, event, registry.model(event.type))
    return _opened_data(event.data, subject, keys.get(subject))


def _opened_data(
    data: dict[str, Any],
    subject: str,
    key: bytes | None,
    fields: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """``data`` with its sealed values opened: those of ``fields`` when given (the
    model's personal fields, for data of its current schema: only those were sealed),
    else any value (an older schema may have kept a personal field under another name)."""
    cipher = None if key is None else _cipher(key)
    bound = subject.encode()
    opened = data.copy()
    # Every event of a replay comes through here: the check is is_sealed's, inline.
    for name in opened if fields is None else fields:  # values replaced, no key added
        value = opened.get(name)
        if value.__class__ is str and value.startswith(SEALED_PREFIX):
            opened[name] = None if cipher is None else _open(cipher, bound, value)
    return opened


def _sealed_fields(model: type[DomainEvent], event: RecordedEvent) -> tuple[str, ...] | None:
    """Where ``event``'s sealed values can be: the model's personal fields when it was
    stored in the current schema, else anywhere (None)."""
    return personal_fields(model) if event.schema_version == model.schema_version else None


class _Recent:
    """The last ``size`` to ``2 × size`` entries: two generations, the older dropped
    whole when the newer fills (no bookkeeping per entry)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.newer: dict[Any, Any] = {}
        self.older: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        found = self.newer.get(key)
        return self.older.get(key) if found is None else found

    def put(self, key: Any, value: Any) -> None:
        if len(self.newer) >= self.size:
            self.older, self.newer = self.newer, {}
        self.newer[key] = value

    def forget(self, key: Any) -> None:
        self.newer.pop(key, None)
        self.older.pop(key, None)


# Ciphers of recent keys, for the next events of the same subject: setting one up
# costs as much as opening a field. ``KeyRing.destroy`` drops its key's cipher.
_ciphers = _Recent(2_048)


def _cipher(key: bytes) -> AESGCM:
    cipher: AESGCM | None = _ciphers.get(key)
    if cipher is None:
        cipher = AESGCM(key)
        _ciphers.put(key, cipher)
    return cipher


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _open(cipher: AESGCM, subject: bytes, value: str) -> str:
    # base64.urlsafe_b64decode's steps without its wrappers: half its cost.
    raw = binascii.a2b_base64(value.encode()[len(SEALED_PREFIX) :].translate(_URLSAFE))
    return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], subject).decode()


def open_event(
    registry: EventRegistry, event: RecordedEvent, keys: Mapping[str, bytes]
) -> DomainEvent:
    """Decode ``event`` with its personal fields opened (before upcasting, see
    ``open_stored``); erased ones (no key) are None.

    Remembered for the next read model of the same page (a service feeds all its
    read models each page, ``shared.projections.runner``): one decoding per event read,
    for the same event object and the same key only (so an erased subject's events
    never come back opened)."""
    found = _remembered(event)
    if found is not None:  # counts only if opened with the same key of its subject
        subject, key, payload = found
        if key == (None if subject is None else keys.get(subject)):
            return payload
    model = registry.model(event.type)
    subject = stored_subject(registry, event, model) if personal_fields(model) else None
    if subject is None:
        key = None
        payload = registry.decode(event)
    else:
        key = keys.get(subject)
        data = _opened_data(event.data, subject, key, _sealed_fields(model, event))
        payload = registry.decode_data(event.type, event.schema_version, data)
    _recently_opened.put(event.position, (event.data, subject, key, payload))
    return payload


_recently_opened = _Recent(
    21_000
)  # a rebuild's page (shared.projections.replay.REBUILD_PAGE) and more


def _remembered(event: RecordedEvent) -> tuple[str | None, bytes | None, DomainEvent] | None:
    """What ``open_event`` made of this very event as read (the same data object):
    its subject, the key it was opened with and the payload. Found by position, a
    cheap hash."""
    found = _recently_opened.get(event.position)
    if found is None or found[0] is not event.data:
        return None
    return found[1], found[2], found[3]


def decode_unopened(registry: EventRegistry, event: RecordedEvent) -> DomainEvent:
    """Decode ``event`` for a reader that keeps none of its personal fields (reports):
    no key is read and nothing is opened; sealed fields are None. When a read model
    before it opened this very event (``open_event``), that decoding is reused as is:
    its texts are then there, but such a reader does not look at them."""
    found = _remembered(event)
    if found is not None:
        return found[2]
    model = registry.model(event.type)
    if not personal_fields(model):
        return registry.decode(event)
    # Not remembered: it is not the opened one.
    data = _opened_data(event.data, "", None, _sealed_fields(model, event))
    return registry.decode_data(event.type, event.schema_version, data)


class SubjectErased(Exception):
    """A new personal fact about a subject whose key was destroyed."""

    def __init__(self, subject_id: str) -> None:
        super().__init__(f"subject {subject_id} was erased")
        self.subject_id = subject_id


class KeyRing:
    """Per-subject keys in the service's database, cached in memory.

    The cache holds keys only; ``destroy`` drops the row and the cached key.
    Another replica may keep a cached key until it restarts, which is why
    writes also check ``erased_subjects`` when a key is missing.
    """

    def __init__(self, db: ReadModelDB) -> None:
        self.db = db
        self._cache: dict[str, bytes] = {}

    async def create_tables(self) -> None:
        await self.db.create_tables(metadata)

    async def key(self, subject_id: str) -> bytes | None:
        """The subject's key, or None when it never had one or it was destroyed."""
        cached = self._cache.get(subject_id)
        if cached is not None:
            return cached
        async with self.db.engine.connect() as conn:
            found = (
                await conn.execute(
                    select(subject_keys.c.key).where(subject_keys.c.subject_id == subject_id)
                )
            ).scalar()
        if found is not None:
            self._cache[subject_id] = bytes(found)
        return None if found is None else bytes(found)

    async def keys(self, subject_ids: Iterable[str]) -> dict[str, bytes]:
        """Keys of many subjects in one query (what a replay page needs)."""
        wanted = {s for s in subject_ids if s not in self._cache}
        if wanted:
            async with self.db.engine.connect() as conn:
                rows = await conn.execute(
                    select(subject_keys.c.subject_id, subject_keys.c.key).where(
                        subject_keys.c.subject_id.in_(sorted(wanted))
                    )
                )
                for row in rows:
                    self._cache[row.subject_id] = bytes(row.key)
        return {s: self._cache[s] for s in subject_ids if s in self._cache}

    async def key_for_writing(self, subject_id: str) -> bytes:
        """The subject's key, made on first use; ``SubjectErased`` after erasure."""
        key = await self.key(subject_id)
        if key is not None:
            return key
        async with self.db.transaction() as conn:
            erased = (
                await conn.execute(
                    select(erased_subjects.c.subject_id).where(
                        erased_subjects.c.subject_id == subject_id
                    )
                )
            ).first()
            if erased is not None:
                raise SubjectErased(subject_id)
        new_key = AESGCM.generate_key(bit_length=256)
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    subject_keys.insert().values(
                        subject_id=subject_id, key=new_key, created_at=datetime.now(UTC)
                    )
                )
        except IntegrityError:  # made by a concurrent writer: use theirs
            self._cache.pop(subject_id, None)
            existing = await self.key(subject_id)
            assert existing is not None
            return existing
        self._cache[subject_id] = new_key
        return new_key

    async def destroy(self, subject_id: str) -> None:
        """Erasure: the key is gone for good; every sealed value of the subject is noise."""
        async with self.db.transaction() as conn:
            await self.destroy_in(conn, subject_id)

    async def destroy_in(self, conn: AsyncConnection, subject_id: str) -> None:
        """``destroy`` inside the caller's transaction (a consumer's, say: on SQLite a
        second writer would wait for that very transaction)."""
        await conn.execute(subject_keys.delete().where(subject_keys.c.subject_id == subject_id))
        already = (
            await conn.execute(
                select(erased_subjects.c.subject_id).where(
                    erased_subjects.c.subject_id == subject_id
                )
            )
        ).first()
        if already is None:
            await conn.execute(
                erased_subjects.insert().values(subject_id=subject_id, erased_at=datetime.now(UTC))
            )
        key = self._cache.pop(subject_id, None)
        if key is not None:
            _ciphers.forget(key)


class Sealer:
    """Encodes and decodes a context's events, sealing and opening their personal fields."""

    def __init__(self, registry: EventRegistry, keys: KeyRing) -> None:
        self.registry = registry
        self.keys = keys

    async def seal(self, event: NewEvent) -> NewEvent:
        """``event`` with its personal fields sealed (unchanged when it has none)."""
        model = self.registry.model(event.type)
        fields = personal_fields(model)
        if not fields:
            return event
        subject = subject_of(event.data, model)
        key = await self.keys.key_for_writing(subject)
        data = dict(event.data)
        for name in fields:
            value = data.get(name)
            if isinstance(value, str) and not is_sealed(value):
                data[name] = seal_value(key, subject, value)
        return NewEvent(
            type=event.type,
            data=data,
            schema_version=event.schema_version,
            event_id=event.event_id,
            occurred_at=event.occurred_at,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            actor=event.actor,
        )

    def open_with(self, event: RecordedEvent, keys: dict[str, bytes]) -> DomainEvent:
        """Decode ``event`` with keys fetched beforehand (``keys_for``); erased fields are None."""
        return open_event(self.registry, event, keys)

    async def keys_for(self, events: Iterable[RecordedEvent]) -> dict[str, bytes]:
        return await self.keys.keys(subjects_of(self.registry, events))

    async def open(self, event: RecordedEvent) -> DomainEvent:
        return self.open_with(event, await self.keys_for([event]))
