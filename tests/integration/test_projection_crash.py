"""A projection killed between applying and committing.

After the restart nothing is applied twice and nothing is lost.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from shared.domain.events import NewEvent
from shared.eventstore import open_event_store
from shared.readmodel.database import ReadModelDB

EVENTS = 1_200


def run_worker(
    store_url: str, db_url: str, crash_at: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "CRASH_AT_EVENT": str(crash_at or "")}
    return subprocess.run(
        [sys.executable, "-m", "tests.support.projection_worker", store_url, db_url],
        env=env, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2],
    )  # fmt: skip


async def test_kill_between_apply_and_commit_on_postgres(postgres_url: str) -> None:
    await kill_and_restart(postgres_url, postgres_url)


async def test_kill_between_apply_and_commit_on_sqlite(tmp_path: Path) -> None:
    await kill_and_restart(f"sqlite:///{tmp_path}/store.db", f"sqlite:///{tmp_path}/read.db")


async def kill_and_restart(store_url: str, db_url: str) -> None:
    store = await open_event_store(store_url)
    expected_totals: dict[str, int] = {}
    for n in range(EVENTS // 4):
        batch = [NewEvent(type="PaymentReceived", data={"amount": n + i}) for i in range(4)]
        await store.append(f"client-{n % 9}", batch)
        expected_totals[f"client-{n % 9}"] = expected_totals.get(f"client-{n % 9}", 0) + 4 * n + 6
    head = await store.head_position()
    await store.close()

    # Killed while the second batch (events 501-1000) is applied but not committed.
    crashed = run_worker(store_url, db_url, crash_at=777)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    db = await ReadModelDB.open(db_url)
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM applied_log"))).scalar() == 500
    assert (await db.checkpoint("projection:applied_log")).position > 0

    restarted = run_worker(store_url, db_url)
    assert restarted.returncode == 0, restarted.stderr
    async with db.engine.connect() as conn:
        log_rows = (await conn.execute(text("SELECT event_id FROM applied_log"))).scalars().all()
        totals = dict((await conn.execute(text("SELECT stream, amount FROM applied_totals"))).all())
    await db.close()
    assert len(log_rows) == EVENTS, "an event was applied twice or lost"
    assert len(set(log_rows)) == EVENTS
    assert totals == expected_totals
    checkpoint_db = await ReadModelDB.open(db_url)
    assert (await checkpoint_db.checkpoint("projection:applied_log")).position == head
    await checkpoint_db.close()
