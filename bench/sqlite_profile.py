"""Where an SQLite append's CPU goes: the same 50,000 events (batches of 10, one
stream per batch, one thread, ``synchronous=NORMAL`` in WAL mode as the store runs)
written four ways, each timed in CPU seconds of this process.

1. our table, the store's statements per append (its stream's version, the rows,
   the last position, each append in its own transaction);
2. our table, the rows alone;
3. our table without the unique index on ``event_id`` (what idempotent re-sends
   need), the rows alone;
4. a table shaped as the ``eventsourcing`` recorder's (a rowid, one unique index
   on (originator, version), four columns, the event in one blob), the rows alone.

It explains ``event_store.sqlite.append_vs_eventsourcing`` (docs/benchmarks.md,
Notes): run ``python -m bench.sqlite_profile``; it prints only.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from shared.eventstore.sqlite import _INSERT, _SCHEMA

EVENTS = 50_000
BATCH = 10
PAYLOAD = {"ticket_id": "x" * 36, "subject": "DNS not resolving", "body": "z" * 60}
WITHOUT_EVENT_ID_INDEX = _SCHEMA.replace("event_id        TEXT    NOT NULL UNIQUE", "event_id TEXT")
PEER_SCHEMA = (
    "CREATE TABLE stored_events (notification_id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB)",
    "CREATE UNIQUE INDEX stored_events_version "
    "ON stored_events (originator_id, originator_version)",
)


def _database(folder: Path, *schema: str) -> sqlite3.Connection:
    db = sqlite3.connect(folder / f"{uuid.uuid4().hex}.db", isolation_level=None)
    for statement in ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL", *schema):
        db.execute(statement)
    return db


def _ours(db: sqlite3.Connection, statements: bool) -> None:
    for _ in range(EVENTS // BATCH):
        stream = f"ticket-{uuid.uuid4()}"
        rows = [
            (str(uuid.uuid4()), stream, i + 1, "TicketOpened", 1, datetime.now(UTC).isoformat(),
             None, None, '{"id":"a","kind":"staff"}', orjson.dumps(PAYLOAD).decode())
            for i in range(BATCH)
        ]  # fmt: skip
        db.execute("BEGIN IMMEDIATE")
        if statements:
            db.execute(
                "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream = ?", (stream,)
            ).fetchone()
        db.executemany(_INSERT, rows)
        if statements:
            db.execute("SELECT last_insert_rowid()").fetchone()
        db.execute("COMMIT")


def _peer(db: sqlite3.Connection) -> None:
    for _ in range(EVENTS // BATCH):
        originator = str(uuid.uuid4())
        rows = [
            (originator, i + 1, "services.tickets.domain:Ticket.Opened",
             orjson.dumps({**PAYLOAD, "occurred_at": datetime.now(UTC).isoformat()}))
            for i in range(BATCH)
        ]  # fmt: skip
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?)",
            rows,
        )
        db.execute("COMMIT")


def _rate(write: Callable[[], None]) -> float:
    started = time.process_time()
    write()
    return EVENTS / (time.process_time() - started)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sqlite-profile-") as name:
        folder = Path(name)
        sides = {
            "ours, the store's statements": lambda: _ours(_database(folder, _SCHEMA), True),
            "ours, the rows alone": lambda: _ours(_database(folder, _SCHEMA), False),
            "ours without the event_id index": lambda: _ours(
                _database(folder, WITHOUT_EVENT_ID_INDEX), False
            ),
            "eventsourcing-shaped table": lambda: _peer(_database(folder, *PEER_SCHEMA)),
        }
        for round_ in (1, 2):
            for label, write in sides.items():
                print(f"round {round_}  {label:34} {_rate(write):>9,.0f} events/s of CPU")


if __name__ == "__main__":
    main()
