"""SQLite adapter: the embedded default, zero set-up.

SQLite has one writer at a time (``BEGIN IMMEDIATE`` takes the write lock), so
positions are handed out and committed in the same order and a reader that
follows positions cannot skip anything. WAL mode lets readers run beside the
writer on their own connection.

Each connection lives on its own thread, as in aiosqlite, but whole appends
run as one function on that thread: one hop between the event loop and the
thread instead of one per statement.

Group commit: appends that arrive while the writer is busy are written by its
next transaction together, each inside its own savepoint (so each is still
all-or-nothing and a conflict in one leaves the others alone), and share one
COMMIT, the fsync that costs most of an append. An append returns only after
that COMMIT. An append alone in its transaction needs no savepoint.

An append's happy path is three statements (its stream's version, its rows,
the last position); whether its event ids were stored before is asked only
when the version check or the unique index refuses it, and a re-sent append is
then answered as it was the first time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from shared.domain.events import NewEvent, RecordedEvent, actor_from_json, actor_to_json
from shared.eventstore.port import (
    AppendResult,
    ConcurrencyError,
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
        actor=actor_from_json(row[9]),
        data=orjson.loads(row[10]),
    )


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` (the write lock) … ``COMMIT``; anything raised inside, a
    failed COMMIT or an interruption included, rolls back first, so a refused or
    cut-short append leaves nothing behind and the connection is free for the next."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # a failed COMMIT may have ended it already
            db.execute("ROLLBACK")
        raise


def _opt(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def path_from_url(url: str) -> str:
    """``sqlite:///var/x.db`` → ``var/x.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    raise ValueError(f"not a sqlite URL: {url!r}")


T = TypeVar("T")


class _ThreadConnection:
    """A sqlite3 connection owned by one thread; calls run there, one hop each."""

    def __init__(self, path: str, name: str) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._path = path
        self.conn: sqlite3.Connection | None = None

    async def open(self, *pragmas: str) -> None:
        def connect() -> None:
            self.conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            for pragma in pragmas:
                self.conn.execute(pragma)

        await self.run(connect)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        if self.conn is not None:
            await self.run(self.conn.close)
        self._executor.shutdown(wait=True)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        assert self.conn is not None
        return self.conn.execute(sql, params).fetchall()


@dataclass
class _Request:
    """An append waiting for the writer thread."""

    stream: str
    rows: list[tuple[Any, ...]]
    expected: ExpectedVersion
    result: asyncio.Future[AppendResult]


class SqliteEventStore(EventStore):
    """Event store in one SQLite file; one writer connection, one reader connection."""

    def __init__(self, writer: _ThreadConnection, reader: _ThreadConnection) -> None:
        super().__init__()
        self._writer = writer
        self._reader = reader
        self._pending: list[_Request] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url_or_path: str, synchronous: str = "FULL") -> SqliteEventStore:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"bad synchronous mode {synchronous!r}")
        path = path_from_url(url_or_path) if "://" in url_or_path else url_or_path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = _ThreadConnection(path, "sqlite-writer")
        await writer.open(
            "PRAGMA busy_timeout = 30000",
            "PRAGMA journal_mode = WAL",
            f"PRAGMA synchronous = {synchronous}",
        )
        assert writer.conn is not None
        await writer.run(writer.conn.executescript, _SCHEMA)
        reader = _ThreadConnection(path, "sqlite-reader")
        await reader.open("PRAGMA busy_timeout = 30000")
        return cls(writer, reader)

    async def close(self) -> None:
        await self._stop_watching()
        if self._flusher is not None:
            await self._flusher  # appends already queued are written, not dropped
        await self._reader.close()
        await self._writer.close()

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = StreamState.ANY,
    ) -> AppendResult:
        validate_append(stream, events, expected_version)
        rows = [
            (
                str(e.event_id),
                stream,
                0,  # stream_version, filled in on the writer thread
                e.type,
                e.schema_version,
                e.occurred_at.isoformat(),
                _opt(e.correlation_id),
                _opt(e.causation_id),
                actor_to_json(e.actor),
                orjson.dumps(e.data).decode(),
            )
            for e in events
        ]
        request = _Request(
            stream, rows, expected_version, asyncio.get_running_loop().create_future()
        )
        self._pending.append(request)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        result = await asyncio.shield(request.result)
        self._notify_appended(result.position, len(events))
        return result

    async def _flush(self) -> None:
        """Write queued appends, a group per transaction, until the queue is empty."""
        while self._pending:
            group, self._pending = self._pending, []
            try:
                outcomes = await self._writer.run(self._write_group, group)
            except BaseException as exc:
                outcomes = [exc] * len(group)
            for request, outcome in zip(group, outcomes, strict=True):
                if request.result.done():
                    continue
                if isinstance(outcome, BaseException):
                    request.result.set_exception(outcome)
                else:
                    request.result.set_result(outcome)

    def _write_group(self, group: list[_Request]) -> list[AppendResult | BaseException]:
        """On the writer thread: one transaction, a savepoint per append when there are
        several (one alone needs none: the transaction is its all-or-nothing), one COMMIT."""
        db = self._writer.conn
        assert db is not None
        if len(group) == 1:
            return [self._write_alone(db, group[0])]
        outcomes: list[AppendResult | BaseException] = []
        with _transaction(db):
            for request in group:
                db.execute("SAVEPOINT append")
                try:
                    outcomes.append(self._append_one(db, request))
                    db.execute("RELEASE append")
                except Exception as exc:
                    db.execute("ROLLBACK TO append")
                    db.execute("RELEASE append")
                    outcomes.append(self._after_refusal(db, request, exc))
        return outcomes

    def _write_alone(self, db: sqlite3.Connection, request: _Request) -> AppendResult | Exception:
        try:
            with _transaction(db):
                result = self._append_one(db, request)
        except Exception as exc:  # rolled back: was it sent before?
            return self._after_refusal(db, request, exc)
        return result

    def _append_one(self, db: sqlite3.Connection, request: _Request) -> AppendResult:
        """The happy path in three statements: the stream's version, the rows, the
        last position. A repeated event id is found only when the insert or the version
        check refuses (``_after_refusal``): re-sent appends are rare, every append paid
        for looking first (a fifth of the writer's statements)."""
        stream, rows = request.stream, request.rows
        current = db.execute(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream = ?", (stream,)
        ).fetchone()[0]
        check_expected(stream, request.expected, current)
        db.executemany(_INSERT, [(r[0], r[1], current + i + 1, *r[3:]) for i, r in enumerate(rows)])
        last = db.execute("SELECT last_insert_rowid()").fetchone()[0]
        return AppendResult(stream_version=current + len(rows), position=int(last))

    def _after_refusal(
        self, db: sqlite3.Connection, request: _Request, refusal: Exception
    ) -> AppendResult | Exception:
        """An append refused (its rows rolled back): the same append stored before is
        answered as it was then (idempotent re-send), ids stored otherwise are an
        ``EventIdConflict``; anything else stays the refusal."""
        if not isinstance(refusal, ConcurrencyError | sqlite3.IntegrityError):
            return refusal
        ids = [r[0] for r in request.rows]
        existing = self._existing(db, ids)
        if not existing:
            return refusal
        try:
            return self._duplicate_result(request.stream, ids, existing)
        except EventIdConflict as conflict:
            return conflict

    @staticmethod
    def _existing(db: sqlite3.Connection, ids: list[str]) -> list[tuple[Any, ...]]:
        marks = ",".join("?" * len(ids))
        return db.execute(
            "SELECT event_id, stream, stream_version, position FROM events "
            f"WHERE event_id IN ({marks}) ORDER BY position",
            ids,
        ).fetchall()

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
                f"{len(rows)} of {len(ids)} event ids already exist, "
                f"not as this append to {stream!r}"
            )
        return AppendResult(stream_version=versions[-1], position=int(rows[-1][3]))

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._reader.run(self._reader.fetchall, sql, params)

    async def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        rows = await self._query(
            f"SELECT {_COLUMNS} FROM events WHERE stream = ? AND stream_version >= ? "
            "ORDER BY stream_version LIMIT ?",
            (stream, from_version, -1 if limit is None else limit),
        )
        return [_recorded(r) for r in rows]

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        rows = await self._query(
            f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [_recorded(r) for r in rows]

    async def stream_version(self, stream: str) -> int:
        rows = await self._query(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream = ?", (stream,)
        )
        return int(rows[0][0])

    async def head_position(self) -> int:
        return int((await self._query("SELECT coalesce(max(position), 0) FROM events"))[0][0])

    async def count(self) -> int:
        return int((await self._query("SELECT count(*) FROM events"))[0][0])
