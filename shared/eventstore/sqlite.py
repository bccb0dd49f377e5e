"""SQLite adapter (aiosqlite): the embedded default, zero set-up.

SQLite has one writer at a time (``BEGIN IMMEDIATE`` takes the write lock), so
positions are handed out and committed in the same order and a reader that
follows positions cannot skip anything. WAL mode lets readers run beside the
writer on their own connection.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from shared.events import Actor, NewEvent, RecordedEvent
from shared.eventstore.port import (
    AppendResult,
    EventIdConflict,
    EventStore,
    ExpectedVersion,
    StreamState,
    check_expected,
    validate_append,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL UNIQUE,
    stream          TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    type            TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    occurred_at     TEXT    NOT NULL,
    correlation_id  TEXT,
    causation_id    TEXT,
    actor           TEXT    NOT NULL,
    data            TEXT    NOT NULL,
    UNIQUE (stream, stream_version)
);
"""

_COLUMNS = (
    "position, stream, stream_version, event_id, type, schema_version, occurred_at, "
    "correlation_id, causation_id, actor, data"
)

_INSERT = (
    "INSERT INTO events (event_id, stream, stream_version, type, schema_version, occurred_at, "
    "correlation_id, causation_id, actor, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _recorded(row: sqlite3.Row | tuple[Any, ...]) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        stream=row[1],
        stream_version=row[2],
        event_id=uuid.UUID(row[3]),
        type=row[4],
        schema_version=row[5],
        occurred_at=datetime.fromisoformat(row[6]),
        correlation_id=None if row[7] is None else uuid.UUID(row[7]),
        causation_id=None if row[8] is None else uuid.UUID(row[8]),
        actor=Actor.from_dict(json.loads(row[9])),
        data=json.loads(row[10]),
    )


def _opt(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def path_from_url(url: str) -> str:
    """``sqlite:///var/x.db`` → ``var/x.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    raise ValueError(f"not a sqlite URL: {url!r}")


class SqliteEventStore(EventStore):
    """Event store in one SQLite file; one writer connection, one reader connection."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        super().__init__()
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url_or_path: str, synchronous: str = "FULL") -> SqliteEventStore:
        path = path_from_url(url_or_path) if "://" in url_or_path else url_or_path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = await aiosqlite.connect(path, isolation_level=None)
        await writer.execute("PRAGMA busy_timeout = 30000")
        await writer.execute("PRAGMA journal_mode = WAL")
        await writer.execute(f"PRAGMA synchronous = {synchronous}")
        await writer.executescript(_SCHEMA)
        reader = await aiosqlite.connect(path, isolation_level=None)
        await reader.execute("PRAGMA busy_timeout = 30000")
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        validate_append(stream, events)
        if isinstance(expected_version, int) and expected_version < 1:
            raise ValueError("an exact expected version counts from 1")
        ids = [str(e.event_id) for e in events]
        async with self._write_lock:
            db = self._writer
            await db.execute("BEGIN IMMEDIATE")
            try:
                duplicate = await self._existing(db, ids)
                if not duplicate:
                    current, last = await self._insert(db, stream, events, ids, expected_version)
                await db.execute("ROLLBACK" if duplicate else "COMMIT")
            except BaseException:
                # A conflict, a failed COMMIT or a cancellation leaves nothing behind.
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise
        if duplicate:
            return self._duplicate_result(stream, ids, duplicate)
        self._notify_appended()
        return AppendResult(stream_version=current + len(events), position=last)

    @staticmethod
    async def _insert(
        db: aiosqlite.Connection,
        stream: str,
        events: Sequence[NewEvent],
        ids: list[str],
        expected_version: ExpectedVersion,
    ) -> tuple[int, int]:
        async with db.execute(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream = ?", (stream,)
        ) as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        check_expected(stream, expected_version, current)
        await db.executemany(
            _INSERT,
            [
                (
                    ids[i],
                    stream,
                    current + i + 1,
                    e.type,
                    e.schema_version,
                    e.occurred_at.isoformat(),
                    _opt(e.correlation_id),
                    _opt(e.causation_id),
                    json.dumps(e.actor.to_dict()),
                    json.dumps(e.data, ensure_ascii=False),
                )
                for i, e in enumerate(events)
            ],
        )
        async with db.execute("SELECT last_insert_rowid()") as cursor:
            last = await cursor.fetchone()
        assert last is not None
        return current, int(last[0])

    @staticmethod
    async def _existing(db: aiosqlite.Connection, ids: list[str]) -> list[tuple[Any, ...]]:
        marks = ",".join("?" * len(ids))
        async with db.execute(
            "SELECT event_id, stream, stream_version, position FROM events "
            f"WHERE event_id IN ({marks}) ORDER BY position",
            ids,
        ) as cursor:
            return [tuple(r) for r in await cursor.fetchall()]

    @staticmethod
    def _duplicate_result(stream: str, ids: list[str], rows: list[tuple[Any, ...]]) -> AppendResult:
        versions = [r[2] for r in rows]
        same_append = (
            [r[0] for r in rows] == ids
            and all(r[1] == stream for r in rows)
            and versions == list(range(versions[0], versions[0] + len(ids)))
        )
        if not same_append:
            raise EventIdConflict(
                f"{len(rows)} of {len(ids)} event ids already exist, not as this append to {stream!r}"
            )
        return AppendResult(stream_version=versions[-1], position=int(rows[-1][3]))

    async def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        async with self._reader.execute(
            f"SELECT {_COLUMNS} FROM events WHERE stream = ? AND stream_version >= ? "
            "ORDER BY stream_version LIMIT ?",
            (stream, from_version, -1 if limit is None else limit),
        ) as cursor:
            return [_recorded(r) for r in await cursor.fetchall()]

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        async with self._reader.execute(
            f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        ) as cursor:
            return [_recorded(r) for r in await cursor.fetchall()]

    async def stream_version(self, stream: str) -> int:
        async with self._reader.execute(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream = ?", (stream,)
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def head_position(self) -> int:
        async with self._reader.execute("SELECT coalesce(max(position), 0) FROM events") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def count(self) -> int:
        async with self._reader.execute("SELECT count(*) FROM events") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0
