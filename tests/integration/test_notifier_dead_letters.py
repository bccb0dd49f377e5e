"""The notifier's faust stream parks a fact it cannot take, as the kernel's consumers do.

The notifier runs as a process (``python -m services.notifier``) on PostgreSQL and
the session's broker, with ``CONSUMER_MAX_FAILURES=2``. A ``DepartmentCreated``
without its ``department_id`` (its directory cannot store it: it fails every time)
is produced onto ``departments.events``, one of the topics the stream reads, and
behind it, on the same partition, a good fact: the good one reaches the
directory, the poison one is in ``dead_letters`` under the stream's group, and
``/ready``, ``/metrics`` and ``shared.cli dead-letters`` say so.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from devtools import devbroker
from services.notifier.copies import directory
from shared.domain.events import Actor, RecordedEvent
from shared.messaging.kafka import ensure_topic
from shared.readmodel.database import ReadModelDB, dead_letters
from tests.integration.test_consumer import produce
from tests.integration.test_copies import created, dead_letters_cli, eventually
from tests.integration.test_service_runtime import ROOT, service_env, wait_ready

PROBLEM = "dead-letters:stream"  # the stream's key under /ready's problems


@asynccontextmanager
async def notifier_running(env: dict[str, str]) -> AsyncIterator[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.notifier", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{env['SERVICE_PORT']}"
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)


async def problems(base: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base) as http:
        found: dict[str, str] = (await http.get("/ready")).json().get("problems", {})
        return found


async def known(db: ReadModelDB) -> dict[str, str]:
    """The notifier's directory of departments: id → English name."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(directory.departments.c.department_id, directory.departments.c.name_en)
        )
        return {r.department_id: r.name_en for r in rows}


async def test_a_poison_fact_is_parked_and_the_stream_goes_on(
    postgres_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}departments.events"
    await ensure_topic(kafka_bootstrap, topic)
    poison = RecordedEvent(
        position=1, stream="department-d1", stream_version=1, event_id=uuid.uuid4(),
        type="DepartmentCreated", schema_version=1, occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(), causation_id=None, actor=Actor("admin", "staff"),
        data={"name": {"en": "Nameless", "ru": "-"}},  # no department_id
    )  # fmt: skip
    good = created("d1", "Sales")
    # The same key: the good fact is behind the poison one on its partition.
    partitions = await produce(kafka_bootstrap, topic, [poison, good])
    assert partitions[0] == partitions[1]
    env = service_env(postgres_url, kafka_bootstrap, topic_prefix, devbroker.free_port())
    env["CONSUMER_MAX_FAILURES"] = "2"
    db = await ReadModelDB.open(postgres_url)
    try:
        async with notifier_running(env) as base:
            await wait_ready(base)

            async def applied() -> bool:
                try:
                    return await known(db) == {"d1": "Sales"}
                except Exception:  # the directory's table is made as the service starts
                    return False

            await eventually(applied, "the good fact behind the poison one never applied")

            async def parked() -> bool:
                return "1 fact(s) parked" in (await problems(base)).get(PROBLEM, "")

            await eventually(parked, "/ready never named the parked fact")
            group = f"{topic_prefix}notifier.stream"
            async with db.engine.connect() as conn:
                rows = (
                    (
                        await conn.execute(
                            select(dead_letters).where(dead_letters.c.group_id == group)
                        )
                    )
                    .mappings()
                    .all()
                )
            assert len(rows) == 1, rows
            row = rows[0]
            assert (row["topic"], row["partition"], row["key"]) == (
                topic, partitions[0], "department-d1",
            )  # fmt: skip
            assert (row["event_id"], row["event_type"]) == (str(poison.event_id), poison.type)
            assert row["failures"] == 2 and row["reason"].startswith("KeyError"), row
            assert "Nameless" not in row["reason"]
            async with httpx.AsyncClient(base_url=base) as http:
                metrics = (await http.get("/metrics")).text
            assert f'dead_letters_parked{{group="{group}"}} 1.0' in metrics
            assert f'dead_letters_total{{group="{group}"}} 1.0' in metrics

            code, listed = await dead_letters_cli(env, "list", "notifier")
            assert code == 0, listed
            assert topic in listed and "department-d1" in listed, listed
            assert str(poison.event_id) in listed and "KeyError" in listed, listed
            # A retry reaches the running stream, which hands it to the processor again.
            letter = str(row["id"])
            code, output = await dead_letters_cli(env, "retry", "notifier", letter, "--wait", "60")
            assert code == 1 and "failed again" in output, output
            code, output = await dead_letters_cli(env, "drop", "notifier", letter)
            assert code == 0 and "dropped" in output, output

            async def problem_gone() -> bool:
                return PROBLEM not in await problems(base)

            await eventually(problem_gone, "the problem stayed after the drop")
            assert await known(db) == {"d1": "Sales"}
    finally:
        await db.close()
