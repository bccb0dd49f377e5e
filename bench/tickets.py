"""The support center under load: clients opening tickets, and a staff queue over 1,000,000.

``python -m bench.tickets`` (also part of ``make bench``) starts identity,
departments, clients and tickets as separate processes (``python -m
services.<name>``: uvicorn, one worker each) on PostgreSQL stores and read
models, with a Kafka-protocol broker (``KAFKA_BOOTSTRAP_SERVERS``, else a local
Tansu). Everything the tickets service knows arrives the real way: the bench
creates a project (clients API), 50 departments offered in the support center
for it (departments API), clients (``POST /clients``, which hands their
credentials to identity) and a staff member (identity API), logs them in at
identity, and waits until the tickets service has learnt them from
``identity.events``, ``clients.events`` and ``departments.events``.

* ``tickets.open_rps``, ``tickets.open_p50_ms``, ``tickets.open_p99_ms``:
  ``POST /tickets`` by 16 clients at once (``--concurrency``: 16 concurrent
  keep-alive HTTP/1.1 connections, each with its own client's token; a
  department drawn at random among the 50), ``--opens`` timed opens (default
  3,000) after 300 not counted; every answer must be a 201. The rate is timed
  opens over the wall time of the timed phase. Goals: ≥ 500/s, p99 ≤ 50 ms.
  Each client waits for its answer before the next open (a closed loop), so
  the rate is what 16 clients get, and p99 shows the waiting.
* ``tickets.open_saturated_rps`` and ``_p99_ms``: the same with twice the
  clients (32), past the service's capacity: the rate barely grows, the
  latency doubles (requests queue), which is why the goal pair is measured at 16.
* ``tickets.queue_p99_ms_1m`` (and ``_p50``): ``GET /tickets`` without
  parameters, the first page of a staff member's queue (50 rows, oldest
  waiting first, ``X-Total-Count``), for a staff member of 3 departments
  (the two largest and a small one) with ``tickets.view``, one request at a
  time, ``--queue-requests`` timed (default 1,000) after 100, with
  1,000,000 tickets in the read model. ``tickets.queue_sql_p99_ms_1m`` is the
  same page and count through the endpoint's own query functions
  (``page_query``, ``total``) on a direct connection: the database's share.
  Goal: p99 ≤ 10 ms. The HTTP page and the SQL alone alternate, request by
  request; ``tickets.queue_vs_sql`` is the SQL's p99 over the page's (1.0: the
  page as fast as its queries; no goal in issue 21).
* ``tickets.open_vs_bare`` (goal ≥ 0.5): ``tickets.open_rps`` over the rate of
  ``bench.bare_tickets`` (a bare FastAPI + asyncpg endpoint inserting one row
  per request, ``tickets.bare_open_rps``), driven right after by the same
  clients with the same bodies at the same concurrency, the services still up.

The million tickets are not opened through events (about an hour here): they
are generated rows COPYed straight into the running service's ``tickets``
table (its secondary indexes dropped first and rebuilt after from the
service's own table definition, then ``VACUUM ANALYZE``), and
``ticket_counts`` is recomputed from the table, so counts and rows agree. The
timeline (``ticket_entries``) is not seeded; queue pages do not read it.
Distributions (seeded): departments by a Zipf-like law (the largest about 13 %
of the tickets), 1 % message threads without a department; 85 % closed, 9 %
answered, 6 % open, open ones waiting since a moment of the last 30 days and
due 4 hours later; 100,000 clients (10 % in one of 2,000 companies); 80 % of
closed and answered tickets and 40 % of open ones assigned, among 200 staff
ids, 400 to the measured staff member in other departments. The endpoint's
``X-Total-Count`` is checked against a plain count of the same view.

The opens run first, on an empty read model; their tickets stay in the queue.
``--profile PREFIX`` writes cProfile profiles of the tickets process during the
timed opens and the timed queue pages (which it slows down) to
``PREFIX.open.prof`` and ``PREFIX.queue.prof``; such runs record no figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex

from bench import goals
from devtools import devbroker
from services.tickets.projections.queries import QueueFilter, Scope, page_query, total
from services.tickets.projections.queue import NEVER
from services.tickets.projections.queue import tickets as tickets_table
from shared.readmodel.database import ReadModelDB

ROOT = Path(__file__).resolve().parents[1]
DSN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN_PASSWORD = "bench-admin-password"
SERVICES = ("identity", "departments", "clients", "tickets")
SEED = 20_261_201

CONCURRENCY = 16
OPEN_WARMUP = 300
DEPARTMENTS = 50
STAFF_DEPARTMENTS = (0, 1, 37)  # indexes by size: the two largest, one small
QUEUE_TICKETS = 1_000_000
QUEUE_WARMUP = 100
COPY_CHUNK = 50_000
IDLE_SECONDS = 5

SUBJECTS = (
    "Mailbox full", "DNS not resolving", "SSL renewal failed", "Backup restore request",
    "Invoice question", "Cannot log in to panel", "Upgrade VPS plan", "PHP version change",
    "Site answers 502", "Domain transfer", "Refund request", "Port 25 blocked",
)  # fmt: skip


# --------------------------------------------------------------------------- processes


async def _admin_sql(*statements: str) -> None:
    admin = await asyncpg.connect(DSN)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


def _db_url(name: str) -> str:
    return DSN.rsplit("/", 1)[0] + "/" + name


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_by_group(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of the services (by name), PostgreSQL, the broker and this bench."""
    groups: dict[str, float] = {}
    named = {pid: name for name, pid in pids.items()}
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        pid = int(entry.name)
        if pid in named:
            group = named[pid]
        elif pid == os.getpid():
            group = "bench"
        elif command == "postgres":
            group = "postgres"
        elif command.startswith("tansu"):
            group = "broker"
        else:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        groups[group] = groups.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return groups


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / ticks, sum(values) / ticks


# The tickets process under cProfile, on only while a timed phase runs: the
# bench sends SIGUSR1 before it and SIGUSR2 after, which writes the profile
# (PREFIX.open.prof, then PREFIX.queue.prof).
PROFILED = """
import cProfile, runpy, signal
names = iter([{prefix!r} + ".open.prof", {prefix!r} + ".queue.prof"])
profile = cProfile.Profile()
def start(*_):
    global profile
    profile = cProfile.Profile()
    profile.enable()
def stop(*_):
    profile.disable()
    profile.dump_stats(next(names))
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
runpy.run_module({module!r}, run_name="__main__")
"""


@dataclass
class Stack:
    urls: dict[str, str]
    pids: dict[str, int]
    databases: dict[str, str] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def running_stack(
    bootstrap: str,
    var_dir: Path,
    profile: Path | None = None,
    services: Sequence[str] = SERVICES,
    extra_env: dict[str, str] | None = None,
    bench: str = "tickets",
    profiled: str = "tickets",
) -> AsyncIterator[Stack]:
    """The services (identity, departments, clients and tickets) as processes, each on
    fresh PostgreSQL databases ``bench_<bench>_<service>``."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    ports = {name: devbroker.free_port() for name in services}
    stack = Stack(urls={n: f"http://127.0.0.1:{p}" for n, p in ports.items()}, pids={})
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name in services:
            database = f"bench_{bench}_{name}"
            await _admin_sql(
                f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
                f'CREATE DATABASE "{database}"',
            )
            stack.databases[name] = database
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "SERVICE_PORT": str(ports[name]),
                "EVENT_STORE_URL": _db_url(database),
                "READ_MODEL_URL": _db_url(database),
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                # The bench's own broker is Tansu (consumers poll it every 10 ms).
                "KAFKA_IMPL": os.environ.get("KAFKA_IMPL", "apache")
                if os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
                else "tansu",
                "TOPIC_PREFIX": prefix,
                # One key set for the run (generated on first start): identity's public
                # key and each service's own, found by every service there.
                "KEYS_DIR": str(var_dir / "keys"),
                "ACCESS_TOKEN_MINUTES": "60",
                "ADMIN_PASSWORD": ADMIN_PASSWORD,
                "IDENTITY_URL": stack.urls["identity"],
                "CLIENTS_URL": stack.urls["clients"],
                "VAR_DIR": str(var_dir / name),
                "LOG_LEVEL": "WARNING",
                **(extra_env or {}),
            }
            command = [sys.executable, "-m", f"services.{name}"]
            if name == profiled and profile is not None:  # the one service under cProfile
                module = f"services.{name}"
                command = [
                    sys.executable,
                    "-c",
                    PROFILED.format(prefix=str(profile), module=module),
                ]
            process = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited on
                command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL
            )
            processes.append(process)
            stack.pids[name] = process.pid
        async with httpx.AsyncClient() as http:
            for url in stack.urls.values():
                deadline = time.monotonic() + 120
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get(f"{url}/ready")).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{url} never became ready")
                    await asyncio.sleep(0.2)
        yield stack
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for database in stack.databases.values():
            await _admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def running_bare(database: str = "bench_tickets_bare") -> AsyncIterator[str]:
    """``bench.bare_tickets`` as a process on a fresh database; yields its base URL."""
    await _admin_sql(
        f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', f'CREATE DATABASE "{database}"'
    )
    port = devbroker.free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BARE_DATABASE_URL": _db_url(database),
        "BARE_PORT": str(port),
    }
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited on
        [sys.executable, "-m", "bench.bare_tickets"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await until_ready(url, process, "the bare app")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        await _admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# --------------------------------------------------------------------------- HTTP


class Connection:
    """One keep-alive HTTP/1.1 connection, as little client work as possible.

    The load generator shares the 2 cores with the services it measures; a
    full client library would take a good part of one.
    """

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        answer_headers = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                answer_headers[name.strip().lower()] = value.strip()
        if "content-length" not in answer_headers:
            raise RuntimeError(f"{method} {path}: an answer without Content-Length")
        content = await self.reader.readexactly(int(answer_headers["content-length"]))
        if answer_headers.get("connection", "").lower() == "close":
            self.close()
        return status, answer_headers, content

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _eventually(
    call: Callable[[], Awaitable[httpx.Response]],
    ok: Callable[[httpx.Response], bool],
    what: str,
    timeout: float = 60,
) -> httpx.Response:
    started = time.monotonic()
    while True:
        answer = await call()
        if ok(answer):
            return answer
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: still {answer.status_code} {answer.text[:300]}")
        await asyncio.sleep(0.1)


def _created(answer: httpx.Response) -> str:
    if answer.status_code != 201:
        raise RuntimeError(f"{answer.request.url}: {answer.status_code} {answer.text[:300]}")
    return str(answer.json()["id"])


async def _login(http: httpx.AsyncClient, identity: str, login: str, password: str) -> str:
    answer = await http.post(f"{identity}/auth/login", json={"login": login, "password": password})
    answer.raise_for_status()
    return f"Bearer {answer.json()['access_token']}"


async def until_ok(call: Any, timeout: float = 60) -> httpx.Response:
    """The first answer below 300 of ``call()``, asked again every 0.1 s (a copy catching up)."""
    deadline = time.monotonic() + timeout
    while True:
        answer: httpx.Response = await call()
        if answer.status_code < 300:
            return answer
        if time.monotonic() > deadline:
            raise RuntimeError(f"{answer.status_code}: {answer.text}")
        await asyncio.sleep(0.1)


async def until_ready(
    url: str, process: subprocess.Popen[bytes], what: str, seconds: float = 60
) -> None:
    """Wait until ``url``/ready answers 200; TimeoutError if it does not in time or the
    process ends first."""
    async with httpx.AsyncClient() as http:
        deadline = time.monotonic() + seconds
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{url}/ready")).status_code == 200:
                    return
            if time.monotonic() > deadline or process.poll() is not None:
                raise TimeoutError(f"{what} never became ready")
            await asyncio.sleep(0.2)


def p99(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


# --------------------------------------------------------------------------- setup


@dataclass
class World:
    """What the bench made through the APIs."""

    admin: str
    project: str
    departments: list[str]  # by size in the seeded queue: the largest first
    clients: list[tuple[str, str]]  # (client id, Authorization)
    staff_id: str
    staff: str  # Authorization


async def make_world(http: httpx.AsyncClient, urls: dict[str, str], clients: int) -> World:
    identity, departments_url = urls["identity"], urls["departments"]
    clients_url, tickets_url = urls["clients"], urls["tickets"]
    admin = await _login(http, identity, "admin", ADMIN_PASSWORD)
    auth = {"Authorization": admin}
    # The services learn admin's access from identity.events first.
    for url, path in ((clients_url, "/projects"), (departments_url, "/departments")):
        await _eventually(
            functools.partial(http.get, url + path, headers=auth),
            lambda r: r.status_code == 200,
            f"{url} knows admin",
        )
    await _eventually(
        lambda: http.get(f"{tickets_url}/tickets", headers=auth),
        lambda r: r.status_code == 200,
        "tickets knows admin",
    )
    project = _created(
        await http.post(f"{clients_url}/projects", json={"name": "Bench hosting"}, headers=auth)
    )
    departments = []
    for n in range(DEPARTMENTS):
        body = {
            "name": {"en": f"Desk {n}", "ru": f"Отдел {n}"},
            "support": {"enabled": True, "providers": [project], "sort": n},
        }
        departments.append(
            _created(await http.post(f"{departments_url}/departments", json=body, headers=auth))
        )
    mine = [departments[i] for i in STAFF_DEPARTMENTS]
    staff_body = {
        "login": "bench-staff",
        "password": "bench-staff-password",
        "full_name": {"en": "Bench Staff"},
        "departments": mine,
    }
    staff_id = _created(
        await _eventually(  # identity learns the departments from their topic
            lambda: http.post(f"{identity}/staff", json=staff_body, headers=auth),
            lambda r: r.status_code != 422,
            "identity knows the departments",
        )
    )
    granted = await http.post(
        f"{identity}/staff/{staff_id}/rights", json={"right": "tickets.view"}, headers=auth
    )
    granted.raise_for_status()
    staff = await _login(http, identity, "bench-staff", "bench-staff-password")

    async def client(n: int) -> tuple[str, str]:
        for attempt in itertools.count():
            login = f"bench{n:03d}x{attempt}"  # a new login if identity timed out on the last
            password = f"Bench-pass-{n:03d}"
            body = {
                "login": login,
                "password": password,
                "email": f"{login}@example.com",
                "country": "DE",
                "customer_status": "individual",
                "contact_person": f"Person {n}",
                "project_id": project,
            }
            created = await _eventually(  # clients learns the project from its projection
                functools.partial(http.post, f"{clients_url}/clients", json=body, headers=auth),
                lambda r: r.status_code != 422,
                "clients knows the project",
            )
            if created.status_code != 503 or attempt == 3:
                return _created(created), await _login(http, identity, login, password)
        raise AssertionError("unreachable")

    made: list[tuple[str, str]] = []
    for start in range(0, clients, 4):
        made += await asyncio.gather(*(client(n) for n in range(start, min(start + 4, clients))))
    # Wait until the tickets service knows every department, client and the staff member.
    for _, authorization in made:
        await _eventually(
            functools.partial(
                http.get,
                f"{tickets_url}/support/departments",
                headers={"Authorization": authorization},
            ),
            lambda r: r.status_code == 200 and set(departments) <= {d["id"] for d in r.json()},
            "tickets knows the client and the departments",
        )
    await _eventually(
        lambda: http.get(f"{tickets_url}/tickets", headers={"Authorization": staff}),
        lambda r: r.status_code == 200,
        "tickets knows the staff member",
    )
    return World(admin, project, departments, made, staff_id, staff)


# --------------------------------------------------------------------------- opening


async def open_tickets(
    base: str, world: World, opens: int, concurrency: int, rng: random.Random
) -> tuple[list[float], float, int]:
    """``opens`` POST /tickets from ``concurrency`` connections: latencies (ms), seconds,
    and the highest position answered."""
    bodies = [
        json.dumps(
            {
                "department_id": rng.choice(world.departments),
                "subject": rng.choice(SUBJECTS),
                "body": f"Please have a look, reference {rng.getrandbits(40):x}. " * 3,
            }
        ).encode()
        for _ in range(opens)
    ]
    todo = iter(bodies)
    latencies: list[float] = []
    positions = [0]

    async def worker(n: int) -> None:
        connection = Connection(base)
        headers = {"Authorization": world.clients[n % len(world.clients)][1]}
        try:
            for body in todo:
                started = time.perf_counter()
                status, _, content = await connection.request("POST", "/tickets", headers, body)
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 201:
                    raise RuntimeError(f"POST /tickets answered {status}: {content[:300]!r}")
                positions.append(json.loads(content)["position"])
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return latencies, time.perf_counter() - started, max(positions)


# --------------------------------------------------------------------------- seeding


# One statement generates the rows in the server (a Python generator and COPY
# take minutes here): volatile random() per row in the innermost select, seeded
# with setseed() first; each outer level derives what depends on the last.
SEED_SQL = """
INSERT INTO tickets ({columns})
SELECT gen_random_uuid()::text, client_id, company_id, project_id, department_id, NULL,
       CASE WHEN department_id IS NOT NULL THEN ($6::text[])[1 + floor(r_subject * 12)::int] END,
       CASE WHEN department_id IS NULL THEN 'client_message' ELSE 'client' END,
       CASE WHEN department_id IS NULL THEN gen_random_uuid()::text END,
       department_id IS NULL AND r_flag < 0.5,
       r_flag < 0.03,
       status,
       CASE WHEN r_assign < CASE WHEN status = 'open' THEN 0.4 ELSE 0.8 END THEN
           CASE WHEN g % 2500 = 7 AND (department_id IS NULL OR department_id <> ALL($7::text[]))
                THEN $4 ELSE md5('staff' || floor(r_who * 200))::uuid::text END
       END,
       opened_at, client_id, updated_at,
       CASE WHEN status = 'open' THEN updated_at END,
       CASE WHEN status = 'open' THEN updated_at ELSE $5 END,
       CASE WHEN status = 'open' THEN updated_at + interval '4 hours' END,
       CASE WHEN status = 'open' THEN updated_at + interval '4 hours' ELSE $5 END,
       CASE WHEN status = 'closed' THEN updated_at END,
       CASE WHEN status = 'closed'
            THEN (ARRAY['client', 'staff', 'auto'])[1 + floor(r_who * 3)::int] END,
       messages, updated_at,
       CASE WHEN status = 'closed' AND r_flag < 0.3 THEN 1 + floor(r_subject * 5)::int END,
       false, 0, messages + floor(r_assign * 4)::int
FROM (
  SELECT *, opened_at + (now() - opened_at) * r_update ^ 3 AS updated_at
  FROM (
    SELECT *, now() - make_interval(secs => 86400 * CASE status
              WHEN 'open' THEN r_age * 30 WHEN 'answered' THEN r_age * 60
              ELSE 2 + r_age * 728 END) AS opened_at
    FROM (
      SELECT g, r_subject, r_flag, r_assign, r_who, r_age, r_update,
             md5('client' || c)::uuid::text AS client_id,
             CASE WHEN c % 10 = 0 THEN md5('company' || (c / 10) % 2000)::uuid::text END
                 AS company_id,
             CASE WHEN r_project < 0.7 THEN $3
                  ELSE md5('project' || floor(r_project * 10))::uuid::text END AS project_id,
             ($2::text[])[width_bucket(r_department, $8::float8[])] AS department_id,
             CASE WHEN r_status < 0.85 THEN 'closed' WHEN r_status < 0.94 THEN 'answered'
                  ELSE 'open' END AS status,
             1 + floor(r_messages * 12)::int AS messages
      FROM (
        SELECT g, floor(random() * 100000)::int AS c, random() AS r_project,
               random() AS r_department, random() AS r_status, random() AS r_subject,
               random() AS r_flag, random() AS r_assign, random() AS r_who, random() AS r_age,
               random() AS r_update, random() AS r_messages
        FROM generate_series(1, $1) AS g
      ) AS drawn
    ) AS picked
  ) AS opened
) AS updated
"""


def _department_bounds() -> list[float]:
    """Lower bounds of each department's share of [0, 1): Zipf-like, 1 % for threads last."""
    weights = [1 / (i + 1) ** 0.8 for i in range(DEPARTMENTS)]
    weights.append(sum(weights) / 99)
    bounds, low = [], 0.0
    for weight in weights:
        bounds.append(low)
        low += weight / sum(weights)
    return bounds


async def seed_queue(world: World, url: str, count: int) -> dict[str, float]:
    """Generate ``count`` tickets into the service's read model; seconds of each step."""
    steps: dict[str, float] = {}
    started = time.perf_counter()

    def step(name: str) -> None:
        nonlocal started
        steps[name] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()

    # Generated tickets have no short number (a column of its own, NULL here).
    columns = ", ".join(c.name for c in tickets_table.columns if c.name != "number")
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    create_indexes = [str(CreateIndex(i).compile(dialect=dialect)) for i in tickets_table.indexes]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for index in tickets_table.indexes:
            await conn.execute(f'DROP INDEX IF EXISTS "{index.name}"')
        await conn.execute(f"SELECT setseed({(SEED % 1000) / 1000})")
        await conn.execute(
            SEED_SQL.format(columns=columns),
            count,
            [*world.departments, None],
            world.project,
            world.staff_id,
            NEVER,
            list(SUBJECTS),
            [world.departments[i] for i in STAFF_DEPARTMENTS],
            _department_bounds(),
        )
        step("insert_s")
        for statement in create_indexes:
            await conn.execute(statement)
        step("indexes_s")
        # Counts consistent with the rows (the opened tickets included).
        async with conn.transaction():
            await conn.execute("DELETE FROM ticket_counts")
            await conn.execute(
                "INSERT INTO ticket_counts (department_id, status, count)"
                " SELECT COALESCE(department_id, ''), status, count(*) FROM tickets"
                " GROUP BY 1, 2"
            )
        await conn.execute("VACUUM ANALYZE tickets")
        await conn.execute("VACUUM ANALYZE ticket_counts")
        step("counts_vacuum_s")
    finally:
        await conn.close()
    return steps


# --------------------------------------------------------------------------- queue


async def measure_queue(
    base: str, world: World, url: str, requests: int, profiled_pid: int | None = None
) -> tuple[list[float], list[float], int]:
    """HTTP latencies and direct-SQL latencies (ms) of the staff member's first page.

    ``profiled_pid``: the tickets process to signal around the timed requests (``--profile``).
    """
    mine = tuple(world.departments[i] for i in STAFF_DEPARTMENTS)
    conn = await asyncpg.connect(url)
    try:
        expected = await conn.fetchval(
            "SELECT count(*) FROM tickets WHERE department_id = ANY($1::text[])"
            " OR (assignee_id = $2 AND (department_id IS NULL OR NOT department_id = ANY($1)))",
            list(mine),
            world.staff_id,
        )
    finally:
        await conn.close()
    # The page through HTTP and the same page and count through the endpoint's query
    # functions on a direct connection (no HTTP), one after the other for each request,
    # so that both see the same moment of the machine.
    scope = Scope(departments=mine, assignee_id=world.staff_id)
    page_statement = page_query(scope, QueueFilter(), "waiting", 50, 0)
    assert page_statement is not None
    db = await ReadModelDB.open(url)
    connection = Connection(base)
    headers = {"Authorization": world.staff}
    latencies: list[float] = []
    sql: list[float] = []
    try:
        for n in range(QUEUE_WARMUP + requests):
            if n == QUEUE_WARMUP and profiled_pid is not None:
                os.kill(profiled_pid, signal.SIGUSR1)
            started = time.perf_counter()
            status, answer_headers, content = await connection.request("GET", "/tickets", headers)
            elapsed = (time.perf_counter() - started) * 1000
            if status != 200:
                raise RuntimeError(f"GET /tickets answered {status}: {content[:300]!r}")
            if n == 0:
                page = json.loads(content)
                if len(page) != 50 or int(answer_headers["x-total-count"]) != expected:
                    raise RuntimeError(
                        f"the queue shows {len(page)} rows of {answer_headers['x-total-count']},"
                        f" expected 50 of {expected}"
                    )
            started = time.perf_counter()
            async with db.engine.connect() as c:
                rows = list(await c.execute(*page_statement))
                counted = await total(c, scope, QueueFilter())
            sql_elapsed = (time.perf_counter() - started) * 1000
            if len(rows) != 50 or counted != expected:
                raise RuntimeError(f"the query found {len(rows)} rows of {counted}")
            if n >= QUEUE_WARMUP:
                latencies.append(elapsed)
                sql.append(sql_elapsed)
        if profiled_pid is not None:
            os.kill(profiled_pid, signal.SIGUSR2)
    finally:
        connection.close()
        await db.close()
    return latencies, sql, int(expected)


# --------------------------------------------------------------------------- main


async def measure(
    opens: int, queue_requests: int, concurrency: int, profile: Path | None, queue_tickets: int
) -> tuple[dict[str, float], dict[str, Any]]:
    rng = random.Random(SEED)
    results: dict[str, float] = {}
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_1_5_15_before": [round(x, 2) for x in os.getloadavg()],
    }
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or stack.enter_context(
            devbroker.running_tansu()
        )
        var_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_tickets_")))
        async with (
            running_stack(bootstrap, var_dir, profile) as services,
            httpx.AsyncClient(timeout=60) as http,
        ):
            print(f"services ready after {time.perf_counter() - started:.1f} s", flush=True)
            world = await make_world(http, services.urls, 2 * concurrency)
            print(f"world ready after {time.perf_counter() - started:.1f} s", flush=True)
            base = services.urls["tickets"]
            pid = services.pids["tickets"]
            # What the tickets process spends doing nothing (its relay and consumers polling).
            idle_before = _cpu_seconds(pid)
            await asyncio.sleep(IDLE_SECONDS)
            idle_share = (_cpu_seconds(pid) - idle_before) / IDLE_SECONDS
            await open_tickets(base, world, OPEN_WARMUP, concurrency, rng)
            cpu_before, machine_before = _cpu_seconds(pid), _machine_busy()
            groups_before = _cpu_by_group(services.pids)
            own_before = time.process_time()
            if profile is not None:
                os.kill(pid, signal.SIGUSR1)
            latencies, seconds, position = await open_tickets(base, world, opens, concurrency, rng)
            if profile is not None:
                os.kill(pid, signal.SIGUSR2)
            service_cpu = _cpu_seconds(pid) - cpu_before
            machine_after = _machine_busy()
            groups_after = _cpu_by_group(services.pids)
            own_cpu = time.process_time() - own_before
            # Cores each part kept busy during the timed opens; "rest": all other processes.
            cores = {
                name: round((used - groups_before.get(name, 0.0)) / seconds, 2)
                for name, used in groups_after.items()
            }
            cores["rest"] = round(
                (machine_after[0] - machine_before[0]) / seconds - sum(cores.values()), 2
            )
            results.update(
                {
                    "tickets.open_rps": opens / seconds,
                    "tickets.open_p50_ms": statistics.median(latencies),
                    "tickets.open_p99_ms": p99(latencies),
                    "tickets.open_concurrency": float(concurrency),
                }
            )
            # The limit beside it: a bare FastAPI + asyncpg endpoint inserting one row per
            # request, the same clients, bodies and concurrency, on the same machine now.
            async with running_bare() as bare:
                await open_tickets(bare, world, OPEN_WARMUP, concurrency, rng)
                bare_latencies, bare_seconds, _ = await open_tickets(
                    bare, world, opens, concurrency, rng
                )
            results.update(
                {
                    "tickets.bare_open_rps": opens / bare_seconds,
                    "tickets.bare_open_p99_ms": p99(bare_latencies),
                    "tickets.open_vs_bare": bare_seconds / seconds,  # same opens: rate ratio
                }
            )
            print(
                f"bare FastAPI + asyncpg: {opens / bare_seconds:.0f}/s,"
                f" p99 {p99(bare_latencies):.1f} ms; ours/bare {bare_seconds / seconds:.3f}",
                flush=True,
            )
            # The same again with twice the clients: past saturation, where requests queue.
            saturated, saturated_seconds, _ = await open_tickets(
                base, world, opens, 2 * concurrency, rng
            )
            results.update(
                {
                    "tickets.open_saturated_rps": opens / saturated_seconds,
                    "tickets.open_saturated_p99_ms": p99(saturated),
                    "tickets.open_saturated_concurrency": float(2 * concurrency),
                }
            )
            print(
                f"with {2 * concurrency} clients: {opens / saturated_seconds:.0f}/s,"
                f" p99 {p99(saturated):.1f} ms",
                flush=True,
            )
            meta["open"] = {
                "timed_opens": opens,
                "warmup_opens": OPEN_WARMUP,
                "concurrency": concurrency,
                "clients": len(world.clients),
                "departments": DEPARTMENTS,
                "seconds": round(seconds, 2),
                "max_ms": round(max(latencies), 1),
                "tickets_process_cpu_share": round(service_cpu / seconds, 2),
                "tickets_process_cpu_ms_per_open": round(service_cpu / opens * 1000, 2),
                "tickets_process_idle_cpu_share": round(idle_share, 2),
                "bench_process_cpu_share": round(own_cpu / seconds, 2),
                "machine_busy_share_of_2_cores": round(
                    (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1]),
                    2,
                ),
                "cores_busy_during_opens": cores,
                "profiled": profile is not None,
            }
            print(
                f"opened {opens} in {seconds:.1f} s: {opens / seconds:.0f}/s,"
                f" p99 {p99(latencies):.1f} ms; tickets process CPU"
                f" {service_cpu / seconds:.0%} of one core ({idle_share:.0%} idle),"
                f" {service_cpu / opens * 1000:.1f} ms per open; machine"
                f" {meta['open']['machine_busy_share_of_2_cores']:.0%} busy; cores: {cores}",
                flush=True,
            )
            # The opened tickets in the read model before the queue is seeded.
            await _eventually(
                lambda: http.get(
                    f"{base}/tickets",
                    params={"min_position": position, "limit": 1},
                    headers={"Authorization": world.admin},
                ),
                lambda r: r.status_code == 200,
                "the read model catches up",
            )
            url = _db_url(services.databases["tickets"])
            seeded = await seed_queue(world, url, queue_tickets)
            print(f"seeded {queue_tickets:,} tickets: {seeded}", flush=True)
            http_ms, sql_ms, visible = await measure_queue(
                base, world, url, queue_requests, pid if profile is not None else None
            )
            results.update(
                {
                    "tickets.queue_p50_ms_1m": statistics.median(http_ms),
                    "tickets.queue_p99_ms_1m": p99(http_ms),
                    "tickets.queue_sql_p99_ms_1m": p99(sql_ms),
                    # Higher is better, 1.0 = the page as fast as its bare SQL.
                    "tickets.queue_vs_sql": p99(sql_ms) / p99(http_ms),
                }
            )
            meta["queue"] = {
                "tickets": queue_tickets + OPEN_WARMUP + opens,
                "seeded_rows": queue_tickets,
                "seed_seconds": seeded,
                "visible_to_staff": visible,
                "staff_departments": len(STAFF_DEPARTMENTS),
                "requests": queue_requests,
                "warmup_requests": QUEUE_WARMUP,
                "page": "GET /tickets (limit 50, sort waiting, every status)",
                "sql_p50_ms": round(statistics.median(sql_ms), 2),
                "max_ms": round(max(http_ms), 1),
            }
    meta["runtime_s"] = round(time.perf_counter() - started, 1)
    meta["loadavg_1_5_15_after"] = [round(x, 2) for x in os.getloadavg()]
    return results, meta


def run(
    opens: int = 3_000,
    queue_requests: int = 1_000,
    concurrency: int = CONCURRENCY,
    profile: Path | None = None,
    queue_tickets: int = QUEUE_TICKETS,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Figures for ``bench/results.json`` and context for ``results.meta.json``."""
    return asyncio.run(measure(opens, queue_requests, concurrency, profile, queue_tickets))


def print_table(results: dict[str, float]) -> None:
    goals.print_table(results, "Support center (tickets service, real processes, PostgreSQL)")


def main(argv: Sequence[str] | None = None) -> None:
    from bench.run import RESULTS_PATH, merge_json

    parser = argparse.ArgumentParser(prog="python -m bench.tickets", description=__doc__)
    parser.add_argument("--opens", type=int, default=3_000, help="timed POST /tickets")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--queue-requests", type=int, default=1_000, help="timed GET /tickets")
    parser.add_argument(
        "--queue-tickets", type=int, default=QUEUE_TICKETS, help="seeded tickets (figure: 1M)"
    )
    parser.add_argument(
        "--profile", type=Path, metavar="PREFIX", help="cProfile the tickets process (see above)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results JSON")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    results, meta = run(
        args.opens, args.queue_requests, args.concurrency, args.profile, args.queue_tickets
    )
    print_table(results)
    # Only a run as documented (1M tickets, not profiled) replaces the recorded figures.
    if not args.no_write and args.profile is None and args.queue_tickets == QUEUE_TICKETS:
        merge_json(
            args.output,
            goals.with_goals(goals.rounded(results)),
        )
        merge_json(args.output.with_name(args.output.stem + ".meta.json"), {"tickets": meta})
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
