"""The console's pages beside the API calls they wrap: the queue over many tickets, a ticket.

``python -m bench.console [--tickets N] [--requests N]`` (also ``make
bench``, section ``console``) starts identity, departments, clients and
tickets as processes on PostgreSQL (``bench.tickets.running_stack``), makes
the bench's world through their APIs (50 support departments, a staff member
of three of them with ``tickets.view``, two clients), opens one ticket in the
staff member's largest department, generates ``--tickets`` rows straight
into the tickets read model (``bench.tickets.seed_queue``, the tickets section's
seeding: default 1,000,000, the issue's figure, about half a minute on a quiet
machine; ``--tickets 100000`` for a quicker run), then starts the console
(``python -m services.console``) and logs the staff member in through its form.

Then, request by request and alternating (so both see the same moment of the
machine), one keep-alive connection each:

* the console's first queue page ``GET /queue`` and the API call it wraps,
  ``GET /tickets?sort=waiting&limit=25&offset=0`` with the same token;
* the console's ticket page ``GET /tickets/{id}`` and ``GET /tickets/{id}``
  of the tickets API.

After the queue pair, the call the queue page really makes (``&counts=true``)
from the bench too, so the meta splits the page's call into the counts (the
tickets service's time) and the console's HTTP client (``calls_p50_ms``:
``bench GET …`` against ``tickets /tickets``).

Figures:

* ``console.queue_render_p99_ms``, ``console.ticket_render_p99_ms`` (goals
  ≤ 50 ms): the page's *server time*, the console's own ``Server-Timing:
  total;dur=`` (from the request's arrival to the answer's start: its calls
  to the services and the rendering);
* ``console.queue_vs_api``, ``console.ticket_vs_api`` (goals ≤ 2): the page's
  p99 as the browser side sees it over the wrapped API call's p99 seen the
  same way (1.0: the page costs no more than the one call).

A page makes more calls than the one it wraps (``/me`` for the user and
rights, the counts per status, the department names), made concurrently
(``asyncio.gather``) over the console's one pooled HTTP client; ``/me`` and the
names are asked for once every few seconds (``services.console.recent``), so
the meta gives each call's p50 and p99 and how many of them a page made on
average (``calls_per_page``). The load
average before and after goes to the meta (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import goals
from bench.tickets import (
    ROOT,
    Connection,
    World,
    _db_url,
    make_world,
    open_tickets,
    p99,
    running_stack,
    seed_queue,
    until_ready,
)
from devtools import devbroker

QUEUE_TICKETS = 1_000_000  # the figure; --tickets 100000 for a quicker run
REQUESTS = 300
WARMUP = 30
STAFF_LOGIN, STAFF_PASSWORD = "bench-staff", "bench-staff-password"
SEED = 20_261_203


@contextlib.asynccontextmanager
async def running_console(urls: dict[str, str], var_dir: Path) -> AsyncIterator[str]:
    """``python -m services.console`` over the services at ``urls``; its base URL."""
    port = devbroker.free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CONSOLE_PORT": str(port),
        **{f"{name.upper()}_URL": url for name, url in urls.items()},
        "CONSOLE_SECRET": os.urandom(16).hex(),
        "VAR_DIR": str(var_dir / "console"),
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited on
        [sys.executable, "-m", "services.console"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await until_ready(base, process, "the console")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


async def console_cookie(base: str) -> str:
    """The staff member signed in through the console's login form: the session cookie."""
    async with httpx.AsyncClient(base_url=base, follow_redirects=False) as http:
        form = await http.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        if csrf is None:
            raise RuntimeError("the login form has no CSRF token")
        answer = await http.post(
            "/login",
            data={"login": STAFF_LOGIN, "password": STAFF_PASSWORD, "csrf_token": csrf.group(1)},
        )
        if answer.status_code != 303:
            raise RuntimeError(f"console login answered {answer.status_code}")
        return f"console_session={http.cookies['console_session']}"


OWN = "console own"
"""The page's total less its longest call (the calls go at once): the console's own time."""


def _server_ms(headers: dict[str, str], calls: dict[str, list[float]]) -> float:
    """The console's total from ``Server-Timing``; each service call's time into ``calls``,
    and the console's own time (``OWN``)."""
    timing = headers.get("server-timing", "")
    found = re.search(r"total;dur=([0-9.]+)", timing)
    if found is None:
        raise RuntimeError("the console's answer has no Server-Timing")
    longest = 0.0
    for service, ms, path in re.findall(r'(\w+);dur=([0-9.]+);desc="([^"]*)"', timing):
        calls.setdefault(f"{service} {path}", []).append(float(ms))
        longest = max(longest, float(ms))
    total = float(found.group(1))
    calls.setdefault(OWN, []).append(total - longest)
    return total


async def measure_pair(
    console: Connection,
    page: str,
    cookie: str,
    api: Connection,
    call: str,
    token: str,
    requests: int,
    also: str | None = None,
) -> tuple[list[float], list[float], list[float], dict[str, list[float]]]:
    """(console wall ms, console server ms, API wall ms, the console's calls' ms by call),
    alternating request by request; ``also``: a third API call timed the same way (in the
    calls, as ``bench <call>``), the one the page really makes when it differs."""
    calls: dict[str, list[float]] = {}
    walls: list[float] = []
    servers: list[float] = []
    apis: list[float] = []
    extra: list[float] = []
    for n in range(WARMUP + requests):
        started = time.perf_counter()
        status, headers, content = await console.request("GET", page, {"Cookie": cookie})
        wall = (time.perf_counter() - started) * 1000
        if status != 200:
            raise RuntimeError(f"console {page} answered {status}: {content[:300]!r}")
        started = time.perf_counter()
        api_status, _, api_content = await api.request("GET", call, {"Authorization": token})
        api_wall = (time.perf_counter() - started) * 1000
        if api_status != 200:
            raise RuntimeError(f"{call} answered {api_status}: {api_content[:300]!r}")
        if also is not None:
            started = time.perf_counter()
            also_status, _, _ = await api.request("GET", also, {"Authorization": token})
            if also_status != 200:
                raise RuntimeError(f"{also} answered {also_status}")
            if n >= WARMUP:
                extra.append((time.perf_counter() - started) * 1000)
        if n >= WARMUP:
            walls.append(wall)
            servers.append(_server_ms(headers, calls))
            apis.append(api_wall)
    if also is not None:
        calls[f"bench GET {also}"] = extra
    return walls, servers, apis, calls


async def measure(queue_tickets: int, requests: int) -> tuple[dict[str, float], dict[str, Any]]:
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_1_5_15_before": [round(x, 2) for x in os.getloadavg()],
    }
    started = time.perf_counter()
    results: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or stack.enter_context(
            devbroker.running_tansu()
        )
        var_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_console_")))
        async with (
            running_stack(bootstrap, var_dir, bench="console") as services,
            httpx.AsyncClient(timeout=60) as http,
        ):
            world: World = await make_world(http, services.urls, 2)
            base = services.urls["tickets"]
            # One ticket in the staff member's largest department: the ticket page's.
            body = {"department_id": world.departments[0], "subject": "Site down", "body": "502"}
            opened = await http.post(
                f"{base}/tickets", json=body, headers={"Authorization": world.clients[0][1]}
            )
            opened.raise_for_status()
            ticket_id = opened.json()["id"]
            await open_tickets(base, world, 50, 4, random.Random(SEED))
            seeded = await seed_queue(world, _db_url(services.databases["tickets"]), queue_tickets)
            print(f"seeded {queue_tickets:,} tickets: {seeded}", flush=True)
            meta["seed_seconds"] = seeded
            async with running_console(services.urls, var_dir) as console_base:
                cookie = await console_cookie(console_base)
                console, api = Connection(console_base), Connection(base)
                try:
                    queue = await measure_pair(
                        console, "/queue", cookie, api,
                        "/tickets?sort=waiting&limit=25&offset=0", world.staff, requests,
                        also="/tickets?sort=waiting&limit=25&offset=0&counts=true",
                    )  # fmt: skip
                    ticket = await measure_pair(
                        console, f"/tickets/{ticket_id}", cookie, api,
                        f"/tickets/{ticket_id}", world.staff, requests,
                    )  # fmt: skip
                finally:
                    console.close()
                    api.close()
    for name, (walls, servers, apis, calls) in (("queue", queue), ("ticket", ticket)):
        results[f"console.{name}_render_p99_ms"] = p99(servers)
        results[f"console.{name}_vs_api"] = p99(walls) / p99(apis)
        meta[name] = {
            "server_p50_ms": round(statistics.median(servers), 2),
            "page_wall_p99_ms": round(p99(walls), 2),
            # The same ratio at the median: on a shared machine the p99s are mostly
            # waiting for a core, and this one shows what the page itself adds.
            "page_wall_p50_ms": round(statistics.median(walls), 2),
            "vs_api_p50": round(statistics.median(walls) / statistics.median(apis), 3),
            "api_wall_p99_ms": round(p99(apis), 2),
            "api_wall_p50_ms": round(statistics.median(apis), 2),
            # Each service call of the page, p50 and p99 (ms) as the console timed it, and
            # how many a page made on average (/me and the names are remembered a while).
            "calls_p50_ms": {
                call: round(statistics.median(ms), 2) for call, ms in sorted(calls.items())
            },
            "calls_p99_ms": {
                call: round(p99(ms) if len(ms) > 1 else ms[0], 2)
                for call, ms in sorted(calls.items())
            },
            "calls_per_page": {
                call: round(len(ms) / len(servers), 3) for call, ms in sorted(calls.items())
            },
        }
    meta.update(
        {
            "queue_tickets": queue_tickets,
            "requests": requests,
            "warmup_requests": WARMUP,
            "runtime_s": round(time.perf_counter() - started, 1),
            "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        }
    )
    return results, meta


def run(
    queue_tickets: int = QUEUE_TICKETS, requests: int = REQUESTS
) -> tuple[dict[str, float], dict[str, Any]]:
    """Figures for ``bench/results.json`` and context for ``results.meta.json``."""
    return asyncio.run(measure(queue_tickets, requests))


def main(argv: Sequence[str] | None = None) -> None:
    from bench.run import RESULTS_PATH, merge_json

    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument(
        "--tickets", "--queue-tickets", dest="tickets", type=int, default=QUEUE_TICKETS,
        help="generated tickets in the queue (default: the issue's 1,000,000)",
    )  # fmt: skip
    parser.add_argument("--requests", type=int, default=REQUESTS, help="timed pairs per page")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results JSON")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    results, meta = run(args.tickets, args.requests)
    goals.print_table(results, "Console (pages over the real services, PostgreSQL)")
    print(f"meta: {meta}")
    if not args.no_write:
        merge_json(args.output, goals.with_goals(goals.rounded(results)))
        merge_json(args.output.with_name(args.output.stem + ".meta.json"), {"console": meta})
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
