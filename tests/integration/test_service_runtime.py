"""A service process on the kernel over real HTTP, with PostgreSQL and the broker (and the CLI)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from devtools import devbroker
from shared.domain.events import NewEvent, RecordedEvent
from shared.eventstore import open_event_store
from shared.readmodel.database import ReadModelDB
from tests.kafka_util import read_topic
from tests.support.keys import keys_dir

ROOT = Path(__file__).parents[2]


def service_env(postgres_url: str, bootstrap: str, prefix: str, port: int) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SERVICE_PORT": str(port),
        "EVENT_STORE_URL": postgres_url,
        "READ_MODEL_URL": postgres_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_IMPL": os.environ.get("KAFKA_IMPL", "apache"),  # set by the broker's fixture
        "TOPIC_PREFIX": prefix,
        "KEYS_DIR": str(keys_dir()),  # the run's keys: identity's public key, its own
    }


@pytest.fixture
def tickets_service(
    postgres_url: str, kafka_bootstrap: str, topic_prefix: str
) -> Iterator[tuple[str, dict[str, str]]]:
    port = devbroker.free_port()
    env = service_env(postgres_url, kafka_bootstrap, topic_prefix, port)
    process = subprocess.Popen(
        [sys.executable, "-m", "services.tickets"], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", env
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        # Uvicorn shuts down gracefully, then re-raises the signal for the exit status.
        assert process.returncode in (0, -signal.SIGTERM), output
        assert '"message": "service.stopped"' in output, output


async def wait_ready(base: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base) as http:
        while True:
            try:
                answer = await http.get("/ready")
                if answer.status_code == 200:
                    body: dict[str, object] = answer.json()
                    return body
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "service never became ready"
            await asyncio.sleep(0.2)


async def test_a_service_runs_its_store_relay_and_projections(
    tickets_service: tuple[str, dict[str, str]],
    postgres_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
) -> None:
    base, _ = tickets_service
    report = await wait_ready(base)
    assert report["store"] is True and report["relay"] == {"running": True, "position": 0}

    store = await open_event_store(postgres_url)
    result = await store.append(
        "ticket-42", [NewEvent(type="TicketOpened", data={"subject": "Disk full"})]
    )
    await store.append("ticket-42", [NewEvent(type="TicketReplied", data={"body": "On it"})])
    await store.close()

    # The relay publishes to tickets.events and the projection catches up.
    messages = await read_topic(kafka_bootstrap, f"{topic_prefix}tickets.events", expect=2)
    in_order = sorted(messages, key=lambda m: m.offset)
    assert [RecordedEvent.from_json(m.value).type for m in in_order] == [
        "TicketOpened",
        "TicketReplied",
    ]
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(100):
            ready = (await http.get("/ready")).json()
            if ready["projections"]["event_type_counts"] > result.position:
                break
            await asyncio.sleep(0.1)
        assert ready["projections"]["event_type_counts"] > result.position
        assert (await http.get("/health")).json() == {"status": "ok", "service": "tickets"}
        metrics = (await http.get("/metrics")).text
        assert "relay_lag_events" in metrics and "http_request_duration_seconds" in metrics
        assert "projection_lag_events" in metrics
        appended = REGISTRY.get_sample_value("events_appended_total")
        assert appended is not None and appended >= 2  # the two events above, at least
        assert "events_appended_total " in metrics
        missing = await http.get("/no/such/path", headers={"x-correlation-id": "abc-123"})
        assert missing.status_code == 404
        assert missing.json() == {"error": {"code": "not_found", "message": "Not Found"}}
        assert missing.headers["x-correlation-id"] == "abc-123"
        assert (await http.get("/openapi.json")).status_code == 200

    db = await ReadModelDB.open(postgres_url)
    async with db.engine.connect() as conn:
        counts = dict((await conn.execute(text("SELECT type, count FROM event_type_counts"))).all())
    await db.close()
    assert counts == {"TicketOpened": 1, "TicketReplied": 1}


async def test_rebuild_replays_the_log_with_progress(postgres_url: str) -> None:
    store = await open_event_store(postgres_url)
    for n in range(300):
        await store.append(
            f"demo-{n}",
            [NewEvent(type="DemoRegistered", data={}), NewEvent(type="DemoNoted", data={})],
        )
    await store.close()
    env = {**service_env(postgres_url, "127.0.0.1:1", "", 1), "COLUMNS": "120"}

    def rebuild() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "shared.cli", "rebuild", "clients"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = rebuild()
    assert "event_type_counts" in first and "600/600" in first
    assert "rebuilt event_type_counts from 600 events" in first
    second = rebuild()  # dropped and replayed, not added on top
    assert "rebuilt event_type_counts from 600 events" in second
    db = await ReadModelDB.open(postgres_url)
    async with db.engine.connect() as conn:
        counts = dict((await conn.execute(text("SELECT type, count FROM event_type_counts"))).all())
    await db.close()
    assert counts == {"DemoRegistered": 300, "DemoNoted": 300}

    status = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "shared.cli", "status", "clients"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.returncode == 0 and "projection event_type_counts" in status.stdout
