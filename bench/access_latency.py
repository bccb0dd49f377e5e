"""How fast access changes travel between services, over real HTTP and a real broker.

``python -m bench.access_latency`` (also part of ``make bench``) starts identity
and departments as separate processes on PostgreSQL stores, with a Kafka-protocol
broker (``KAFKA_BOOTSTRAP_SERVERS``, else a local Tansu; ``--broker apache_kafka``:
a real Apache Kafka, figures named ``authz.apache_kafka.…``), then measures:

* ``authz.revocation_p99_ms`` – from the 2xx of ``DELETE /staff/{id}/rights/{right}``
  at identity to the first 403 for that right at departments
  (``GET /departments`` needs ``departments.view``); goal p99 ≤ 200 ms;
* ``projection.command_to_read_model_p99_ms`` – from the 2xx of
  ``POST /departments/{id}/rights`` at departments to ``GET /me`` at identity of a
  member of that department showing the change; goal p99 ≤ 100 ms.

Each is measured over ``--rounds`` changes (default 200), polling every ~2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx

from bench.brokers import figure_name, running_broker
from devtools import devbroker

ROOT = Path(__file__).resolve().parents[1]
DSN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN_PASSWORD = "bench-admin-password"
# Each poll is an HTTP request to the service doing the work being timed; on a
# 2-core machine polling harder slows what it measures.
POLL_SECONDS = 0.005


async def _database(name: str) -> str:
    admin = await asyncpg.connect(DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return DSN.rsplit("/", 1)[0] + "/" + name


async def _drop(name: str) -> None:
    admin = await asyncpg.connect(DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def running_services(
    bootstrap: str, var_dir: Path, kafka_impl: str = "tansu"
) -> AsyncIterator[dict[str, str]]:
    """identity and departments as processes; yields their base URLs."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    processes: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    databases = []
    try:
        for name in ("identity", "departments"):
            database = f"bench_latency_{name}"
            url = await _database(database)
            databases.append(database)
            port = devbroker.free_port()
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "SERVICE_PORT": str(port),
                "EVENT_STORE_URL": url,
                "READ_MODEL_URL": url,
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "KAFKA_IMPL": kafka_impl,  # the broker's fetch wait (messaging.kafka_clients)
                **{k: v for k in ("KAFKA_FETCH_MAX_WAIT_MS",) if (v := os.environ.get(k))},
                "TOPIC_PREFIX": prefix,
                # One key set for the run (generated on first start): identity's public
                # key and each service's own, found by every service there.
                "KEYS_DIR": str(var_dir / "keys"),
                "ADMIN_PASSWORD": ADMIN_PASSWORD,
                "VAR_DIR": str(var_dir / name),
                "LOG_LEVEL": "WARNING",
            }
            processes.append(
                subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited on
                    [sys.executable, "-m", f"services.{name}"],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                )
            )
            urls[name] = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:
            for url in urls.values():
                deadline = time.monotonic() + 90
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"{url}/ready")).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{url} never became ready")
                    await asyncio.sleep(0.2)
        yield urls
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for database in databases:
            await _drop(database)


async def _login(
    http: httpx.AsyncClient, identity: str, login: str, password: str
) -> dict[str, str]:
    answer = await http.post(f"{identity}/auth/login", json={"login": login, "password": password})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def _until(
    call: Callable[[], Awaitable[httpx.Response]], done: Callable[[httpx.Response], bool]
) -> float:
    """Poll ``call`` until ``done``; the time it took, in milliseconds."""
    started = time.perf_counter()
    while True:
        answer = await call()
        if done(answer):
            return (time.perf_counter() - started) * 1000
        if time.perf_counter() - started > 30:
            raise TimeoutError("the change never arrived")
        await asyncio.sleep(POLL_SECONDS)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def measure(rounds: int, broker: str = "tansu") -> dict[str, float]:
    with contextlib.ExitStack() as stack:
        bootstrap, kafka_impl = stack.enter_context(running_broker(broker))
        var_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_latency_")))
        async with (
            running_services(bootstrap, var_dir, kafka_impl) as urls,
            httpx.AsyncClient(timeout=30) as http,
        ):
            identity, departments = urls["identity"], urls["departments"]
            admin = await _login(http, identity, "admin", ADMIN_PASSWORD)
            created = await http.post(
                f"{departments}/departments",
                json={"name": {"en": "Bench", "ru": "Бенч"}, "task_language": "en"},
                headers=admin,
            )
            created.raise_for_status()
            department = created.json()["id"]

            async def add_member() -> str:
                answer = await http.post(
                    f"{identity}/staff",
                    json={
                        "login": "member",
                        "password": "member-password",
                        "full_name": {"en": "Member"},
                        "departments": [department],
                    },
                    headers=admin,
                )
                if answer.status_code == 201:
                    return str(answer.json()["id"])
                return ""

            member = ""
            while not member:  # identity learns the department from the topic first
                member = await add_member()
                await asyncio.sleep(0.05)
            as_member = await _login(http, identity, "member", "member-password")

            revocations: list[float] = []
            for _ in range(rounds):
                grant = await http.post(
                    f"{identity}/staff/{member}/rights",
                    json={"right": "departments.view"},
                    headers=admin,
                )
                grant.raise_for_status()
                await _until(
                    lambda: http.get(f"{departments}/departments", headers=as_member),
                    lambda r: r.status_code == 200,
                )
                revoke = await http.delete(
                    f"{identity}/staff/{member}/rights/departments.view", headers=admin
                )
                revoke.raise_for_status()
                revocations.append(
                    await _until(
                        lambda: http.get(f"{departments}/departments", headers=as_member),
                        lambda r: r.status_code == 403,
                    )
                )

            propagations: list[float] = []
            for i in range(rounds):
                enabled = i % 2 == 0
                change = await http.post(
                    f"{departments}/departments/{department}/rights",
                    json={"right": "clients.view", "enabled": enabled},
                    headers=admin,
                )
                change.raise_for_status()

                def shows_it(answer: httpx.Response, on: bool = enabled) -> bool:
                    return ("clients.view" in answer.json()["permissions"]) == on

                propagations.append(
                    await _until(lambda: http.get(f"{identity}/me", headers=as_member), shows_it)
                )
    figures = {
        "authz.revocation_p50_ms": statistics.median(revocations),
        "authz.revocation_p99_ms": p99(revocations),
        "projection.command_to_read_model_p50_ms": statistics.median(propagations),
        "projection.command_to_read_model_p99_ms": p99(propagations),
    }
    return {figure_name(name, broker): value for name, value in figures.items()}


def run(rounds: int = 200, broker: str = "tansu") -> dict[str, float]:
    return asyncio.run(measure(rounds, broker))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.access_latency", description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--broker", choices=("tansu", "apache_kafka"), default="tansu")
    args = parser.parse_args()
    for name, value in run(args.rounds, args.broker).items():
        print(f"{name:42} {value:8.1f}")


if __name__ == "__main__":
    main()
