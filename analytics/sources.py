"""Where a context's history is, and how an analyst reads it.

Each context (service) has its own event store and its own subject keys (the
``subject_keys`` table of crypto-shredding, in the service's read-model
database). The URLs come from the same settings the services use, so on a
machine with ``make run`` nothing needs saying:

1. an explicit ``--store-url`` / ``--keys-url`` (``context=URL``, or a bare
   ``URL`` when only one context is read);
2. ``<CONTEXT>_EVENT_STORE_URL`` / ``<CONTEXT>_READ_MODEL_URL`` (the names the
   deployment secrets use, ``deploy/README.md``);
3. ``EVENT_STORE_URL`` / ``READ_MODEL_URL`` / ``VAR_DIR`` as a service would
   resolve them (``shared.runtime.settings``).

Personal fields are opened as a replay opens them: with the keys that exist
now. An erased subject's key is gone, so its fields come out as null, never
readable. Reading never writes: keys are only selected, and a store that does
not exist is an error rather than a new empty file.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared import catalogue
from shared.domain.events import EventRegistry, RecordedEvent, UnknownEventType
from shared.eventstore import EventStore, open_event_store
from shared.privacy.shredding import open_stored, personal_fields, subject_keys
from shared.readmodel.database import async_url
from shared.runtime.sources import Source

CONTEXTS: tuple[str, ...] = catalogue.names()
PAGE_SIZE = 5_000


class SourceError(Exception):
    """Bad input about where to read (names the option at fault)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


def registry_of(context: str) -> EventRegistry:
    """The context's event registry (its current schemas and upcasters)."""
    return catalogue.spec(context).events


def check_contexts(contexts: Iterable[str], option: str = "--context") -> list[str]:
    chosen = list(dict.fromkeys(contexts))
    for context in chosen:
        if context not in CONTEXTS:
            raise SourceError(option, f"unknown context {context!r}; one of {', '.join(CONTEXTS)}")
    return chosen


def parse_urls(values: Sequence[str], contexts: Sequence[str], option: str) -> dict[str, str]:
    """``context=URL`` pairs (a bare URL when exactly one context is read)."""
    urls: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if sep and name in CONTEXTS:
            urls[name] = rest
        elif len(contexts) == 1:
            urls[contexts[0]] = value
        else:
            raise SourceError(
                option, f"{value!r}: say which context, e.g. {contexts[0]}=postgresql://..."
            )
    for name in urls:
        if name not in contexts:
            raise SourceError(
                option, f"{name} is not among the contexts read ({', '.join(contexts)})"
            )
    return urls


def _sqlite_path(url: str) -> Path | None:
    for prefix in ("sqlite:///", "sqlite+aiosqlite:///"):
        if url.startswith(prefix):
            return Path(url.removeprefix(prefix))
    return None


async def open_store(source: Source) -> EventStore:
    """The context's store, for reading; a SQLite file that is not there is an error."""
    path = _sqlite_path(source.store_url)
    if path is not None and not path.exists():
        raise SourceError("--store-url", f"{source.context}: no event store at {source.store_url}")
    try:
        return await open_event_store(source.store_url, namespace=source.context, pool_size=2)
    except ValueError as exc:
        raise SourceError("--store-url", f"{source.context}: {exc}") from None


@dataclass
class SubjectKeys:
    """The live subject keys of one context, selected (never written) and cached."""

    engine: AsyncEngine | None
    available: bool = True
    _cache: dict[str, bytes | None] = field(default_factory=dict)

    @classmethod
    async def open(cls, url: str) -> SubjectKeys:
        path = _sqlite_path(url)
        if path is not None and not path.exists():
            return cls(engine=None, available=False)
        target = async_url(url)
        if target.startswith("sqlite"):
            return cls(engine=create_async_engine(target))
        return cls(engine=create_async_engine(target, pool_size=1, max_overflow=0))

    async def keys(self, subject_ids: Iterable[str]) -> dict[str, bytes]:
        """Keys of those subjects that still have one."""
        wanted = sorted({s for s in subject_ids if s not in self._cache})
        if wanted and self.engine is not None and self.available:
            try:
                async with self.engine.connect() as conn:
                    for start in range(0, len(wanted), 1000):
                        chunk = wanted[start : start + 1000]
                        rows = await conn.execute(
                            select(subject_keys.c.subject_id, subject_keys.c.key).where(
                                subject_keys.c.subject_id.in_(chunk)
                            )
                        )
                        for row in rows:
                            self._cache[row.subject_id] = bytes(row.key)
            except (OperationalError, ProgrammingError, DBAPIError):
                # No subject_keys table: this context seals nothing, or the URL is
                # not its read-model database. Either way nothing can be opened.
                self.available = False
        for subject in wanted:
            self._cache.setdefault(subject, None)
        found = {s: self._cache.get(s) for s in subject_ids}
        return {s: k for s, k in found.items() if k is not None}

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()


def opened_data(
    registry: EventRegistry, event: RecordedEvent, keys: Mapping[str, bytes]
) -> tuple[int, dict[str, Any]]:
    """The payload as a replay sees it: personal fields opened (None once erased, see
    ``shredding.open_stored``), then upcast to the current schema. Returns (schema
    version of the result, data). An event type this code does not know, or one
    whose upcasters are missing, is returned as stored.
    """
    model = registry.models().get(event.type)
    if model is None:
        return event.schema_version, event.data
    data = event.data
    if personal_fields(model):
        with contextlib.suppress(UnknownEventType):  # no subject without the upcasters
            data = open_stored(registry, event, keys)
    try:
        return model.schema_version, registry.upcast(event.type, event.schema_version, data)
    except UnknownEventType:
        return event.schema_version, data


async def pages(
    store: EventStore, page_size: int = PAGE_SIZE
) -> AsyncIterator[list[RecordedEvent]]:
    """The whole log in global order, a page at a time (bounded memory)."""
    position = 0
    while page := await store.read_all(position, page_size):
        yield page
        position = page[-1].position
