"""Leases on PostgreSQL: one connection per process, a lost connection stops its jobs.

Two ``Leases`` stand for two replicas of one service on one read-model database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from shared.readmodel import leases as leases_module
from shared.readmodel.database import ReadModelDB
from shared.readmodel.leases import Job, LeaseBusy, LeaseLost, Leases


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[ReadModelDB]:
    opened = await ReadModelDB.open(postgres_url, pool_size=1)
    yield opened
    await opened.close()


async def advisory_holders(postgres_url: str) -> dict[int, int]:
    """Backend pid -> advisory locks it holds, in this database."""
    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch(
            "SELECT l.pid, count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
            " GROUP BY l.pid"
        )
    finally:
        await conn.close()
    return {row["pid"]: row["n"] for row in rows}


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def test_a_process_holds_all_its_leases_on_one_connection_outside_the_pool(
    db: ReadModelDB, postgres_url: str
) -> None:
    first, second = Leases(db), Leases(db)
    running: dict[str, str] = {}
    waiting: set[str] = set()

    def job(owner: str, name: str) -> Job:
        async def work() -> None:
            running[name] = owner
            await asyncio.Event().wait()

        return work

    def standing_by(name: str) -> Job:
        async def wait() -> None:
            waiting.add(name)

        return wait

    names = [f"projection:{i}" for i in range(6)]
    tasks = [asyncio.create_task(first.run(n, job("first", n))) for n in names]
    await until(lambda: len(running) == len(names))
    tasks += [asyncio.create_task(second.run(n, job("second", n), standing_by(n))) for n in names]
    try:
        await until(lambda: waiting == set(names))
        holders = await advisory_holders(postgres_url)
        # Six leases, one backend; the read-model pool (one connection) is still free.
        assert list(holders.values()) == [len(names)]
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
        assert set(running.values()) == {"first"}
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await first.close()
        await second.close()


async def test_a_lost_connection_stops_the_jobs_and_the_other_replica_takes_over(
    db: ReadModelDB, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases_module, "PING_SECONDS", 0.1)
    monkeypatch.setattr(leases_module, "RETRY_SECONDS", 0.05)
    first, second = Leases(db), Leases(db)
    holder: dict[str, str] = {}

    def job(owner: str) -> Job:
        async def work() -> None:
            holder["now"] = owner
            await asyncio.Event().wait()

        return work

    one = asyncio.create_task(first.run("relay:clients.events", job("first")))
    await until(lambda: holder.get("now") == "first")
    two = asyncio.create_task(second.run("relay:clients.events", job("second")))
    try:
        (pid,) = (await advisory_holders(postgres_url)).keys()
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        with pytest.raises(LeaseLost):
            await asyncio.wait_for(one, 5)
        await until(lambda: holder.get("now") == "second")
        assert len(await advisory_holders(postgres_url)) == 1
    finally:
        for task in (one, two):
            task.cancel()
        await asyncio.gather(one, two, return_exceptions=True)
        await first.close()
        await second.close()


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
async def test_holding_leases_now_refuses_while_a_service_runs_them_and_makes_it_wait(
    dialect: str, postgres_url: str, tmp_path: Path
) -> None:
    """What ``rebuild`` does: it cannot take the leases of a running service's read
    models; once it holds them, a service starting meanwhile waits for the end."""
    url = postgres_url if dialect == "postgresql" else f"sqlite:///{tmp_path}/read.db"
    db = await ReadModelDB.open(url, pool_size=1)
    service, rebuild = Leases(db), Leases(db)
    names = ["projection:queue", "projection:reports"]
    running = asyncio.Event()

    async def projections() -> None:
        running.set()
        await asyncio.Event().wait()

    try:
        task = asyncio.create_task(service.run("projection:reports", projections))
        await asyncio.wait_for(running.wait(), 10)
        with pytest.raises(LeaseBusy, match="projection:reports"):
            async with rebuild.holding_now(names):
                pytest.fail("held a lease the service holds")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        running.clear()
        async with rebuild.holding_now(names):  # "projection:queue" was let go as well
            task = asyncio.create_task(service.run("projection:queue", projections))
            await asyncio.sleep(0.5)
            assert not running.is_set()  # the starting service stands by
        await asyncio.wait_for(running.wait(), 10)  # and takes over after the block
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await service.close()
        await rebuild.close()
        await db.close()
