"""Export events to JSON Lines or Parquet, by context, type and time range.

One row per event: the envelope (DESIGN §3) plus ``context`` and ``data``.
``data`` is what a replay sees: personal fields opened with the live keys
(null once the subject was erased) and upcast to the current schema, whose
version is ``schema_version``; ``stored_schema_version`` is the version in the
store. In JSON Lines ``actor`` and ``data`` are objects; in Parquet ``actor``
is three columns (``actor_id``, ``actor_kind``, ``actor_impersonator_id``) and
``data`` is JSON text (``json_extract`` in DuckDB, ``json.loads`` in pandas).

The time range is half-open on ``occurred_at``: ``since <= occurred_at < until``.
Memory stays bounded: the log is read a page at a time, and Parquet is written
in row groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from analytics.sources import PAGE_SIZE, SubjectKeys, open_store, opened_data, pages, registry_of
from shared.domain.events import EventRegistry, RecordedEvent
from shared.privacy.shredding import subjects_of
from shared.runtime.sources import Source

FORMATS = ("jsonl", "parquet")
ROW_GROUP_SIZE = 50_000

PARQUET_SCHEMA = pa.schema(
    [
        ("context", pa.string()),
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("schema_version", pa.int32()),
        ("stored_schema_version", pa.int32()),
        ("stream", pa.string()),
        ("stream_version", pa.int64()),
        ("position", pa.int64()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("correlation_id", pa.string()),
        ("causation_id", pa.string()),
        ("actor_id", pa.string()),
        ("actor_kind", pa.string()),
        ("actor_impersonator_id", pa.string()),
        ("data", pa.string()),
    ]
)


@dataclass(frozen=True)
class Selection:
    """Which events to export: some types (none named: all), a half-open time range."""

    types: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def wants(self, event: RecordedEvent) -> bool:
        if self.types and event.type not in self.types:
            return False
        if self.since is not None and event.occurred_at < self.since:
            return False
        return self.until is None or event.occurred_at < self.until


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def export_row(
    context: str, event: RecordedEvent, registry: EventRegistry, keys: dict[str, bytes]
) -> dict[str, Any]:
    """One event as an export row (JSON-ready but for ``occurred_at``, a datetime)."""
    version, data = opened_data(registry, event, keys)
    return {
        "context": context,
        "event_id": str(event.event_id),
        "type": event.type,
        "schema_version": version,
        "stored_schema_version": event.schema_version,
        "stream": event.stream,
        "stream_version": event.stream_version,
        "position": event.position,
        "occurred_at": event.occurred_at,
        "correlation_id": _text(event.correlation_id),
        "causation_id": _text(event.causation_id),
        "actor": event.actor.to_dict(),
        "data": data,
    }


class Sink(Protocol):
    def write(self, rows: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON object per line, UTF-8."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        self._file.writelines(orjson.dumps(row) + b"\n" for row in rows)

    def close(self) -> None:
        self._file.close()


class ParquetSink:
    """Columns of ``PARQUET_SCHEMA``, written a row group at a time."""

    def __init__(self, path: Path, row_group_size: int = ROW_GROUP_SIZE) -> None:
        self._writer = pq.ParquetWriter(path, PARQUET_SCHEMA, compression="zstd")
        self._row_group_size = row_group_size
        self._pending: list[dict[str, Any]] = []

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        self._pending.extend(rows)
        while len(self._pending) >= self._row_group_size:
            self._flush(self._pending[: self._row_group_size])
            del self._pending[: self._row_group_size]

    def _flush(self, rows: list[dict[str, Any]]) -> None:
        columns: dict[str, list[Any]] = {name: [] for name in PARQUET_SCHEMA.names}
        for row in rows:
            actor = row["actor"]
            flat = {
                **row,
                "actor_id": actor["id"],
                "actor_kind": actor["kind"],
                "actor_impersonator_id": actor["impersonator_id"],
                "data": orjson.dumps(row["data"]).decode(),
            }
            for name, values in columns.items():
                values.append(flat[name])
        self._writer.write_table(pa.table(columns, schema=PARQUET_SCHEMA))

    def close(self) -> None:
        if self._pending:
            self._flush(self._pending)
            self._pending = []
        self._writer.close()


def open_sink(path: Path, fmt: str, row_group_size: int = ROW_GROUP_SIZE) -> Sink:
    if fmt == "jsonl":
        return JsonLinesSink(path)
    if fmt == "parquet":
        return ParquetSink(path, row_group_size)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")


class Progress(Protocol):
    """What the exporter reports: a context's total, then pages as they are read."""

    def start(self, context: str, total: int) -> None: ...

    def advance(self, context: str, events: int) -> None: ...


@dataclass
class ExportReport:
    """How many events of each context were written."""

    written: dict[str, int] = field(default_factory=dict)
    # Contexts with sealed fields but no readable subject_keys table: all came out null.
    without_keys: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.written.values())


async def export_events(
    sources: Iterable[Source],
    sink: Sink,
    selection: Selection = Selection(),
    progress: Progress | None = None,
    page_size: int = PAGE_SIZE,
) -> ExportReport:
    """Write the selected events of every source to ``sink``, context after context."""
    report = ExportReport()
    for source in sources:
        registry = registry_of(source.context)
        store = await open_store(source)
        keys = await SubjectKeys.open(source.keys_url)
        written = 0
        try:
            if progress is not None:
                progress.start(source.context, await store.count())
            async for page in pages(store, page_size):
                chosen = [e for e in page if selection.wants(e)]
                subjects = subjects_of(registry, chosen)
                found = await keys.keys(subjects)
                if subjects and not keys.available and source.context not in report.without_keys:
                    report.without_keys.append(source.context)
                sink.write([export_row(source.context, e, registry, found) for e in chosen])
                written += len(chosen)
                if progress is not None:
                    progress.advance(source.context, len(page))
        finally:
            await keys.close()
            await store.close()
        report.written[source.context] = written
    return report
