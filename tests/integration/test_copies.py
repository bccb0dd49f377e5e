"""A service's copy of another context's facts, filled again from the topic (``refill-copies``);
identity's facts only when identity signed them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from devtools import devbroker
from services.tickets.copies import support
from services.tickets.copies.support import known_departments
from services.tickets.service import SPEC
from shared.domain.events import Actor, RecordedEvent
from shared.messaging.copies import refill
from shared.messaging.kafka import ensure_topic
from shared.messaging.signatures import FactVerifier, sign
from shared.names import inbound_group, refill_lease
from shared.readmodel.database import ReadModelDB
from shared.readmodel.leases import Leases
from tests.integration.test_consumer import produce
from tests.integration.test_service_runtime import ROOT, service_env, wait_ready
from tests.support.keys import identity_key

_position = iter(range(1, 1_000_000))


def fact(kind: str, department_id: str, **data: Any) -> RecordedEvent:
    """A departments.events message as the departments service publishes it."""
    return RecordedEvent(
        position=next(_position), stream=f"department-{department_id}", stream_version=1,
        event_id=uuid.uuid4(), type=kind, schema_version=1, occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(), causation_id=None, actor=Actor("admin", "staff"),
        data={"department_id": department_id, **data},
    )  # fmt: skip


def created(department_id: str, name: str) -> RecordedEvent:
    return fact(
        "DepartmentCreated", department_id, name={"en": name, "ru": name}, schedule_id=None,
        support={"enabled": True, "providers": [], "description": "", "sort": 0,
                 "charge_requests": False},
    )  # fmt: skip


async def departments(db: ReadModelDB) -> dict[str, str] | None:
    """The copy: department id → English name (None when the table is gone)."""
    async with db.engine.connect() as conn:
        try:
            rows = await conn.execute(
                select(known_departments.c.department_id, known_departments.c.name_en)
            )
        except Exception:
            return None
        return {r.department_id: r.name_en for r in rows}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def tickets_running(env: dict[str, str]) -> AsyncIterator[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.tickets", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{env['SERVICE_PORT']}"
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)


async def refill_copies(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.cli", "refill-copies", "tickets", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_a_lost_copy_is_refilled_from_its_topic_up_to_where_the_service_stood(
    postgres_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}departments.events"
    await ensure_topic(kafka_bootstrap, topic)
    renamed = fact("DepartmentChanged", "d1", changed=["name"], name={"en": "Sales EU", "ru": "-"})
    history = [created("d1", "Sales"), created("d2", "Support"), renamed, created("d3", "Abuse")]
    # The relay delivers at least once: one fact is on the topic twice.
    await produce(kafka_bootstrap, topic, [*history, history[1]])
    before = {"d1": "Sales EU", "d2": "Support", "d3": "Abuse"}
    env = service_env(postgres_url, kafka_bootstrap, topic_prefix, devbroker.free_port())
    db = await ReadModelDB.open(postgres_url)
    try:
        async with tickets_running(env) as base:
            await wait_ready(base)
            await eventually(lambda: _is(db, before), "the service never filled its copy")
            # While the service runs: refused, nothing dropped.
            code, output = await refill_copies(env, "--copy", "known_departments")
            assert code == 1 and "stop it first" in output, output
            assert await departments(db) == before

        # Stopped; a fact arrives it has not taken yet, and the copy is lost.
        await produce(kafka_bootstrap, topic, [created("d4", "Billing")])
        async with db.transaction() as conn:
            await conn.execute(text("DROP TABLE known_departments"))

        code, output = await refill_copies(env, "--copy", "known_departments")
        assert code == 0, output
        assert "refilled known_departments from 4 events" in output, output
        assert await departments(db) == before  # as the service left it: no d4 yet

        # A refill that fails half-way leaves the copy as it was.
        applied: list[str] = []

        async def fails_at_the_third(conn: AsyncConnection, event: RecordedEvent) -> None:
            if len(applied) == 2:
                raise RuntimeError("the database went away")
            applied.append(event.type)
            await support.on_departments_event(conn, event)

        (copy,) = [c for c in SPEC.copies if c.name == "known_departments"]
        with pytest.raises(RuntimeError, match="went away"):
            await refill(
                replace(copy, apply=fails_at_the_third), db, kafka_bootstrap,
                inbound_group("tickets", topic_prefix), topic_prefix,
                admit=FactVerifier(identity_key().public_key()).admit,
            )  # fmt: skip
        assert await departments(db) == before

        # A replica starting during a refill leaves its copies alone until it ends.
        leases = Leases(db)
        try:
            async with leases.holding_now([refill_lease("tickets")]):
                env["SERVICE_PORT"] = str(devbroker.free_port())
                async with tickets_running(env) as base:
                    await eventually(lambda: _waiting_for_refill(base), "the consumer did not wait")
                    assert await departments(db) == before
                    await leases.close()  # the refill ends
                    await eventually(
                        lambda: _is(db, {**before, "d4": "Billing"}), "d4 never arrived"
                    )
        finally:
            await leases.close()
    finally:
        await db.close()


async def _is(db: ReadModelDB, expected: dict[str, str]) -> bool:
    return await departments(db) == expected


async def _waiting_for_refill(base: str) -> bool:
    async with httpx.AsyncClient(base_url=base) as http:
        try:
            ready = (await http.get("/ready")).json()
        except httpx.TransportError:
            return False
    return "waits for a refill" in str(ready.get("problems", {}).get("refill", ""))


async def dead_letters_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.cli", "dead-letters", *args, cwd=ROOT,
        env={**env, "COLUMNS": "400"},  # rich would wrap the table in 80 columns
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def _problems(base: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base) as http:
        problems: dict[str, str] = (await http.get("/ready")).json().get("problems", {})
        return problems


async def test_a_fact_the_copy_cannot_take_is_parked_and_the_operator_drops_it(
    postgres_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A message on departments.events that is no event at all, between two facts of
    the same department: the tickets service parks it after CONSUMER_MAX_FAILURES tries,
    the later fact still reaches its copy, /ready and /metrics say a fact is parked,
    ``dead-letters list`` shows it, ``retry`` fails again (exit 1), ``drop`` ends the
    problem, and a refill of the copy leaves the dropped message out."""
    topic = f"{topic_prefix}departments.events"
    await ensure_topic(kafka_bootstrap, topic)
    renamed = fact("DepartmentChanged", "d1", changed=["name"], name={"en": "Sales EU", "ru": "-"})
    await produce(kafka_bootstrap, topic, [created("d1", "Sales")])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:  # the key of d1's facts: the same partition, before the rename
        await producer.send_and_wait(topic, key=b"department-d1", value=b"{not json")
    finally:
        await producer.stop()
    await produce(kafka_bootstrap, topic, [renamed])
    env = service_env(postgres_url, kafka_bootstrap, topic_prefix, devbroker.free_port())
    env["CONSUMER_MAX_FAILURES"] = "2"
    db = await ReadModelDB.open(postgres_url)
    try:
        async with tickets_running(env) as base:
            await wait_ready(base)
            await eventually(lambda: _is(db, {"d1": "Sales EU"}), "the rename never arrived")

            async def parked() -> bool:
                return "1 fact(s) parked" in (await _problems(base)).get("dead-letters", "")

            await eventually(parked, "/ready never named the parked fact")
            async with httpx.AsyncClient(base_url=base) as http:
                metrics = (await http.get("/metrics")).text
            group = inbound_group("tickets", topic_prefix)
            assert f'dead_letters_parked{{group="{group}"}} 1.0' in metrics

            code, listed = await dead_letters_cli(env, "list", "tickets")
            assert code == 0, listed
            assert topic in listed and "department-d1" in listed, listed
            assert "JSONDecodeError" in listed or "ValidationError" in listed, listed
            code, output = await dead_letters_cli(env, "retry", "tickets", "1", "--wait", "60")
            assert code == 1 and "failed again" in output, output
            code, output = await dead_letters_cli(env, "drop", "tickets", "1")
            assert code == 0 and "dropped" in output, output

            async def problem_gone() -> bool:
                return "dead-letters" not in await _problems(base)

            await eventually(problem_gone, "the problem stayed after the drop")
            code, output = await dead_letters_cli(env, "drop", "tickets", "1")
            assert code == 1 and "no parked fact 1" in output, output

        # Stopped: the copy is filled again from the topic, the dropped message left out.
        code, output = await refill_copies(env, "--copy", "known_departments")
        assert code == 0, output
        assert "refilled known_departments from 2 events" in output, output
        assert await departments(db) == {"d1": "Sales EU"}
    finally:
        await db.close()


async def test_a_service_without_such_a_copy_is_told_so(postgres_url: str) -> None:
    code, output = await refill_copies(
        {"PATH": "/usr/bin:/bin", "READ_MODEL_URL": postgres_url}, "--copy", "nothing"
    )
    assert code == 2 and "keeps no copy 'nothing'" in output, output
    assert "known_departments, staff_names, known_clients" in output, output


def staff_fact(kind: str, staff_id: str, name: str) -> RecordedEvent:
    """An identity.events message naming a staff member (unsigned: ``sign`` it as identity)."""
    return RecordedEvent(
        position=next(_position), stream=f"staff-{staff_id}", stream_version=next(_position),
        event_id=uuid.uuid4(), type=kind, schema_version=1, occurred_at=datetime.now(UTC),
        correlation_id=None, causation_id=None, actor=Actor("admin", "staff"),
        data={"staff_id": staff_id, "login": staff_id, "full_name": {"en": name, "ru": name}},
    )  # fmt: skip


async def staff_names(db: ReadModelDB) -> dict[str, str] | None:
    async with db.engine.connect() as conn:
        try:
            rows = await conn.execute(select(support.staff_names))
        except Exception:
            return None
        return {r.staff_id: r.name_en for r in rows}


async def _rejected(base: str) -> int:
    async with httpx.AsyncClient(base_url=base) as http:
        count: int = (await http.get("/ready")).json()["signed_facts_rejected"]
        return count


async def test_forged_identity_facts_reach_no_copy_not_even_a_refill(
    postgres_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}identity.events"
    await ensure_topic(kafka_bootstrap, topic)
    key = identity_key()
    alice = sign(key, staff_fact("StaffAdded", "s-1", "Alice"))
    # Produced straight onto the topic: unsigned, signed by another key, and a signed
    # fact whose name was changed after identity signed it.
    unsigned = staff_fact("StaffChanged", "s-1", "Mallory")
    other_key = sign(Ed25519PrivateKey.generate(), staff_fact("StaffAdded", "s-2", "Eve"))
    real = sign(key, staff_fact("StaffAdded", "s-9", "Bob"))
    tampered = real._replace(data={**real.data, "full_name": {"en": "Eve", "ru": "Eve"}})
    carol = sign(key, staff_fact("StaffAdded", "s-3", "Carol"))
    await produce(kafka_bootstrap, topic, [alice, unsigned, other_key, tampered, carol])
    expected = {"s-1": "Alice", "s-3": "Carol"}
    env = service_env(postgres_url, kafka_bootstrap, topic_prefix, devbroker.free_port())
    db = await ReadModelDB.open(postgres_url)
    try:
        async with tickets_running(env) as base:
            await wait_ready(base)
            await eventually(lambda: _staff_are(db, expected), "the signed facts never arrived")
            # Every forged fact was read by both consumers of the topic (the access feed
            # and the staff names' route), and reported by each.
            await eventually(lambda: _rejected_at_least(base, 6), "the forgeries were not reported")
            assert await staff_names(db) == expected

        async with db.transaction() as conn:
            await conn.execute(text("DROP TABLE staff_names"))
        code, output = await refill_copies(env, "--copy", "staff_names")
        assert code == 0, output
        assert await staff_names(db) == expected, output
    finally:
        await db.close()


async def _staff_are(db: ReadModelDB, expected: dict[str, str]) -> bool:
    return await staff_names(db) == expected


async def _rejected_at_least(base: str, count: int) -> bool:
    return await _rejected(base) >= count
