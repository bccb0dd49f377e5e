"""Notifier bench: from a client's reply (its 2xx) to the mail in an aiosmtpd server.

Identity, departments, clients, tickets and the notifier run as processes
(``python -m services.<name>``, as ``bench.tickets`` starts them) on fresh
PostgreSQL databases and a Tansu broker (or KAFKA_BOOTSTRAP_SERVERS); an
aiosmtpd server in the bench process takes the mail. One staff member is subscribed to
``client_reply`` by e-mail and assigned one ticket per client.

* ``notifier.event_to_mail_p99_ms``: replies one at a time, each timed from the
  reply's 2xx to its mail's arrival (>= 200 replies);
* ``notifier.mails_per_s``: a burst of replies at once, mails over the seconds
  from the first reply to the last mail (goal ≥ 500/s);
* ``notifier.mails_vs_bare`` (goal ≥ 0.5): that rate over the rate of a bare
  aiosmtplib loop (``bench.bare_mail``, its own process, as many connections as
  the notifier's pool, ``SMTP_POOL_SIZE``, set for both, as many mails built as
  the mailer builds them) to the same SMTP server, run right after the burst
  (``notifier.bare_mails_per_s``).

``--profile PREFIX`` writes a cProfile profile (CPU time) of the notifier process
during the burst to ``PREFIX.open.prof`` (and prints only). Every run prints the
CPU milliseconds per mail of each process over the burst (``/proc``), the bench's
own (its SMTP server) included.

    .venv/bin/python -m bench.notifier [--replies 200] [--burst 300] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from email import message_from_bytes, policy
from pathlib import Path

import httpx
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench import goals
from bench import tickets as tickets_bench
from bench.tickets import ADMIN_PASSWORD, ROOT, _cpu_seconds, p99, running_stack
from bench.tickets import until_ok as _ok
from devtools import devbroker
from services.notifier.settings import NotifierSettings

SERVICES = ("identity", "departments", "clients", "tickets", "notifier")
POOL = NotifierSettings().smtp_pool_size
PASSWORD = ADMIN_PASSWORD
IP = "203.0.113.5"


class Inbox:
    """An SMTP server noting when each ticket's mail arrived (by the subject's ticket
    reference: its number, or its id)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.count = 0
        self.changed = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        message = message_from_bytes(
            raw if isinstance(raw, bytes) else raw.encode(), policy=policy.default
        )
        ticket = str(message["subject"]).rpartition("#")[2]
        self.arrivals.setdefault(ticket, []).append(time.perf_counter())
        self.count += 1
        self.changed.set()
        return "250 OK"

    async def wait_count(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.count < count:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.count} of {count} mails arrived")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)


async def measure(replies: int, burst: int, profile: Path | None = None) -> dict[str, float]:
    if profile is not None:  # CPU time, not wall time: the process waits on I/O a lot
        tickets_bench.PROFILED = tickets_bench.PROFILED.replace(
            "import cProfile,", "import time, cProfile,"
        ).replace("cProfile.Profile()", "cProfile.Profile(time.process_time)")
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    smtp_port = devbroker.free_port()
    smtp = await loop.create_server(
        lambda: SMTP(inbox, hostname="bench.localhost", loop=loop), "127.0.0.1", smtp_port
    )
    # The same concurrency budget for the notifier and the bare loop: its pool's size.
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "SMTP_POOL_SIZE": str(POOL)}
    try:
        with contextlib.ExitStack() as stack:
            bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or stack.enter_context(
                devbroker.running_tansu()
            )
            var = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            async with (
                running_stack(
                    bootstrap, var, profile, SERVICES, env, bench="notifier", profiled="notifier"
                ) as services,
                httpx.AsyncClient(timeout=60) as http,
            ):
                return await _run(
                    http, services.urls, inbox, replies, burst, smtp_port, services.pids,
                    profiling=profile is not None,
                )  # fmt: skip
    finally:
        smtp.close()


async def _login(http: httpx.AsyncClient, url: str, login: str, password: str) -> dict[str, str]:
    body = {"login": login, "password": password}
    answer = await _ok(
        lambda: http.post(f"{url}/auth/login", json=body, headers={"X-Forwarded-For": IP})
    )
    return {"Authorization": f"Bearer {answer.json()['access_token']}", "X-Forwarded-For": IP}


async def _run(
    http: httpx.AsyncClient,
    urls: dict[str, str],
    inbox: Inbox,
    replies: int,
    burst: int,
    port: int,
    pids: dict[str, int],
    profiling: bool = False,
) -> dict[str, float]:
    admin = await _login(http, urls["identity"], "admin", PASSWORD)
    project = (await _ok(lambda: http.post(f"{urls['clients']}/projects", json={"name": "bench"},
                                           headers=admin))).json()["id"]  # fmt: skip
    desk = (await _ok(lambda: http.post(f"{urls['departments']}/departments", headers=admin, json={
        "name": {"en": "Bench desk"}, "support": {"enabled": True, "providers": [project]},
    }))).json()["id"]  # fmt: skip
    agent = (await _ok(lambda: http.post(f"{urls['identity']}/staff", headers=admin, json={
        "login": "agent", "password": "agent-password-1", "full_name": {"en": "Agent"},
        "email": "agent@bench.example.com", "departments": [desk],
    }))).json()["id"]  # fmt: skip
    for right in ("tickets.view", "tickets.reply"):
        await _ok(lambda r=right: http.post(f"{urls['identity']}/staff/{agent}/rights",
                                            headers=admin, json={"right": r}))  # fmt: skip
    await asyncio.sleep(1)  # the tickets service learns the rights from identity.events
    staff = await _login(http, urls["identity"], "agent", "agent-password-1")
    await _ok(lambda: http.put(f"{urls['notifier']}/subscriptions/{agent}", headers=staff,
                               json={"notices": {"client_reply": ["email"]}}))  # fmt: skip
    customer_login = "customer1"
    await _ok(lambda: http.post(f"{urls['clients']}/clients", headers=admin, json={
        "login": customer_login, "password": "Passw0rd-bench", "email": "c@bench.example.com",
        "country": "DE", "customer_status": "individual", "project_id": project,
    }))  # fmt: skip
    customer = await _login(http, urls["identity"], customer_login, "Passw0rd-bench")
    total = 1 + replies + burst
    tickets: list[str] = []
    refs: dict[str, str] = {}
    for _ in range(total):
        opened = await _ok(lambda: http.post(f"{urls['tickets']}/tickets", headers=customer, json={
            "department_id": desk, "subject": "s", "body": "b"}))  # fmt: skip
        tickets.append(opened.json()["id"])
        # A mail names its ticket by the short number (``#1042``), by its id before numbers.
        refs[tickets[-1]] = str(opened.json().get("number") or tickets[-1])
    for ticket in tickets:  # the agent takes each ticket, so the client's reply is for them
        await _ok(lambda t=ticket: http.post(f"{urls['tickets']}/tickets/{t}/transfer",
                                             headers=admin, json={"staff_id": agent}))  # fmt: skip
    # Warm-up, which also shows the notifier's stream has joined: one reply, one mail.
    warm_up, tickets = tickets[0], tickets[1:]
    await _ok(lambda: http.post(f"{urls['tickets']}/tickets/{warm_up}/messages",
                                headers=customer, json={"body": "warm-up"}))  # fmt: skip
    await inbox.wait_count(1, timeout=120)

    latencies: list[float] = []
    for ticket in tickets[:replies]:
        await _ok(lambda t=ticket: http.post(f"{urls['tickets']}/tickets/{t}/messages",
                                             headers=customer, json={"body": "more"}))  # fmt: skip
        answered = time.perf_counter()
        while refs[ticket] not in inbox.arrivals:
            inbox.changed.clear()
            await asyncio.wait_for(inbox.changed.wait(), 30)
        latencies.append((inbox.arrivals[refs[ticket]][0] - answered) * 1000)
    ordered = sorted(latencies)
    p50, p90, slow = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.9)], ordered[-1]
    over = [round(v) for v in latencies if v > 500]
    # The shape behind the p99 (not a figure of results.json).
    print(f"reply -> mail ms: p50 {p50:.1f}, p90 {p90:.1f}, max {slow:.1f}; over 500 ms: {over}")
    if profiling:
        os.kill(pids["notifier"], signal.SIGUSR1)
    cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    cpu_before["bench"] = time.process_time()
    started, before = time.perf_counter(), inbox.count
    gate = asyncio.Semaphore(16)

    async def reply(ticket: str) -> None:
        async with gate:
            await _ok(lambda: http.post(f"{urls['tickets']}/tickets/{ticket}/messages",
                                        headers=customer, json={"body": "burst"}))  # fmt: skip

    await asyncio.gather(*(reply(t) for t in tickets[replies:]))
    await inbox.wait_count(before + burst)
    seconds = time.perf_counter() - started
    if profiling:
        os.kill(pids["notifier"], signal.SIGUSR2)
    cpu = {name: _cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu["bench"] = time.process_time() - cpu_before["bench"]
    print(  # where the burst's CPU went, per mail (not a figure of results.json)
        "CPU ms per mail over the burst:",
        ", ".join(f"{name} {ms * 1000 / burst:.2f}" for name, ms in cpu.items()),
        file=sys.stderr,
    )
    # The limit beside it, right after, to the same SMTP server: a bare aiosmtplib loop
    # in its own process sending as many mails over as many connections.
    before = inbox.count
    bare_seconds = await bare_mail_seconds(port, burst)
    await inbox.wait_count(before + burst, timeout=10)
    return {
        "notifier.event_to_mail_p99_ms": round(p99(latencies), 1),
        "notifier.mails_per_s": round(burst / seconds, 1),
        "notifier.bare_mails_per_s": round(burst / bare_seconds, 1),
        "notifier.mails_vs_bare": round(bare_seconds / seconds, 3),
    }


async def bare_mail_seconds(port: int, count: int) -> float:
    """Seconds ``bench.bare_mail`` takes to send ``count`` mails to the server on ``port``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bare_mail", "--port", str(port), "--count", str(count),
        "--connections", str(POOL), stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"bench.bare_mail ended with {process.returncode}")
    return float(json.loads(out)["seconds"])


def run(replies: int = 200, burst: int = 300, profile: Path | None = None) -> dict[str, float]:
    """Figures for ``bench/results.json``."""
    return asyncio.run(measure(replies, burst, profile))


def main() -> None:
    from bench.run import RESULTS_PATH, merge_json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replies", type=int, default=200)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results JSON")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--profile", type=Path, help="cProfile the notifier process: PREFIX")
    args = parser.parse_args()
    results = run(args.replies, args.burst, args.profile)
    goals.print_table(results, "Notifier (ratio: ours / bare aiosmtplib loop, same run)")
    if not args.no_write and args.profile is None:
        merge_json(args.output, goals.with_goals(results))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
