"""Mail gateway bench: mails into tickets through real SMTP, beside a bare aiosmtpd INSERT.

Identity, departments, clients and tickets run as processes (``python -m
services.<name>``, as ``bench.tickets`` starts them) on fresh PostgreSQL
databases and a broker (``--broker``: Tansu, or KAFKA_BOOTSTRAP_SERVERS, under the
goals' names; ``apache_kafka``, a real Apache Kafka 4.x, the production broker, under
``mail.apache_kafka.…``; ``make bench`` runs both); the tickets
service's gateway listens for SMTP (``INBOUND_SMTP_PORT``). A project, a
department taking mail at ``support@bench-desk.example.com`` and ``CONNECTIONS``
clients are made through the APIs, and one warm-up mail per client shows the
tickets service has learnt them (451 until then; 550 ``unknown_address`` until
it has learnt the department). Every mail opens a ticket
(its own Message-ID, a plain-text body of a few lines).

* ``mail.inbound_to_ticket_p99_ms`` (goal ≤ 500 ms): mails one at a time over one
  connection, each timed from the start of its SMTP transaction to its ticket
  answering ``GET /tickets/{id}`` (the read model has it; polled every 5 ms);
* ``mail.inbound_per_s`` (goal ≥ 200/s): ``--mails`` mails over ``CONNECTIONS``
  connections at once (20, as Postfix delivers to one destination by default; one
  per client, each mail after the previous one's 250),
  over the seconds from the first mail to the last ticket in the read model
  (the department's ``X-Total-Count``); the median of ``ROUNDS`` rounds;
* ``mail.bare_inbound_per_s`` / ``mail.bare_inbound_p99_ms``: the same mails the
  same way to ``bench.bare_inbound`` (its own process: aiosmtpd, one INSERT per
  mail into PostgreSQL, then 250), a round of it after each of ours, with the
  services stopped (SIGSTOP) meanwhile so that their idle polling takes none of
  its cores;
* ``mail.inbound_vs_bare`` (goal ≥ 0.3): the median of the rounds' ratios (ours over
  the bare round right after it), so that a slow moment of the machine falls on
  both sides of one round rather than on one side of the figure.

The load average (1 min) before and after goes to ``results.meta.json``: the
machine may be shared, and these are rates of one process. ``--profile PREFIX``
writes a cProfile profile of the tickets process during the burst to
``PREFIX.open.prof`` (it slows it down: such runs record nothing).

    .venv/bin/python -m bench.mail [--mails 1000] [--latency-mails 200]
        [--broker apache_kafka] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx

from bench import goals
from bench import tickets as tickets_bench
from bench.brokers import BROKERS, figure_name, running_broker
from bench.tickets import (
    ADMIN_PASSWORD,
    ROOT,
    _admin_sql,
    _cpu_seconds,
    _db_url,
    p99,
    running_stack,
)
from bench.tickets import (
    until_ok as _ok,
)
from devtools import devbroker
from services.tickets.app.mail_gateway import NAMESPACE

SERVICES = ("identity", "departments", "clients", "tickets")
# Mails in flight at once: 20 connections, as Postfix delivers to one destination
# by default (default_destination_concurrency_limit); the same on both sides.
CONNECTIONS = 20
ADDRESS = "support@bench-desk.example.com"
IP = "203.0.113.5"
BARE_DATABASE = "bench_mail_bare"
BODY = (
    "Hello,\n\nsince this morning the site answers 502 Bad Gateway, and the mailbox\n"
    "quota warning came again. Could you have a look?\n\nThanks\n"
)


def ticket_of(message_id: str) -> str:
    """The id the gateway gives the ticket a mail opens (``mail_gateway._derived``)."""
    return str(uuid.uuid5(NAMESPACE, f"ticket:{message_id}"))


def make_mail(sender: str, n: int) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = f"Bench client <{sender}>"
    mail["To"] = ADDRESS
    mail["Subject"] = f"Site down #{n}"
    mail["Message-ID"] = f"<{uuid.uuid4()}@bench-client.example.com>"
    mail.set_content(BODY)
    return mail


async def _login(http: httpx.AsyncClient, url: str, login: str, password: str) -> dict[str, str]:
    body = {"login": login, "password": password}
    answer = await _ok(
        lambda: http.post(f"{url}/auth/login", json=body, headers={"X-Forwarded-For": IP})
    )
    return {"Authorization": f"Bearer {answer.json()['access_token']}", "X-Forwarded-For": IP}


async def _send_until_taken(port: int, mail: EmailMessage, timeout: float = 120) -> None:
    """Send until the gateway answers 250: 451 while it has not learnt the client yet,
    550 ``unknown_address`` while it has not learnt the new department (both come from
    the other services' topics), each mail with a Message-ID of its own."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await aiosmtplib.send(mail, hostname="127.0.0.1", port=port, timeout=30)
            return
        except aiosmtplib.SMTPResponseException as refused:
            learning = refused.code == 451 or "unknown_address" in refused.message
            if not learning or time.monotonic() > deadline:
                raise
        del mail["Message-ID"]  # a refused mail is recorded as handled: send it anew
        mail["Message-ID"] = f"<{uuid.uuid4()}@bench-client.example.com>"
        await asyncio.sleep(0.2)


async def burst(port: int, mails: Sequence[Sequence[EmailMessage]]) -> float:
    """Seconds until every connection has sent its mails, each awaited to its 250."""

    async def connection(share: Sequence[EmailMessage]) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
        await smtp.connect()
        try:
            for mail in share:
                await smtp.send_message(mail)  # raises on anything but 250
        finally:
            await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(connection(share) for share in mails))
    return time.perf_counter() - started


async def one_by_one(
    port: int, mails: Sequence[EmailMessage], until_ticket: Any = None
) -> list[float]:
    """Milliseconds per mail, one at a time over one connection: to its 250, or, with
    ``until_ticket``, to the moment ``until_ticket(mail)`` says its ticket is readable."""
    latencies = []
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
    await smtp.connect()
    try:
        for mail in mails:
            started = time.perf_counter()
            await smtp.send_message(mail)
            if until_ticket is not None:
                # Polled: what a reader of the API sees is what is measured.
                while not await until_ticket(mail):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await smtp.quit()
    return latencies


async def _setup(http: httpx.AsyncClient, urls: dict[str, str], port: int) -> tuple[
    dict[str, str], str, list[str]
]:  # fmt: skip
    admin = await _login(http, urls["identity"], "admin", ADMIN_PASSWORD)
    project = (await _ok(lambda: http.post(f"{urls['clients']}/projects", json={"name": "bench"},
                                           headers=admin))).json()["id"]  # fmt: skip
    desk = (await _ok(lambda: http.post(f"{urls['departments']}/departments", headers=admin, json={
        "name": {"en": "Mail desk"},
        "support": {"enabled": True, "providers": [project], "inbound_email": ADDRESS},
    }))).json()["id"]  # fmt: skip
    senders = []
    clients_url = f"{urls['clients']}/clients"
    for i in range(CONNECTIONS):
        email = f"client{i}@bench-client.example.com"
        body = {
            "login": f"mailer{i}", "password": f"Passw0rd-bench-{i}", "email": email,
            "country": "DE", "customer_status": "individual", "project_id": project,
        }  # fmt: skip
        await _ok(lambda body=body: http.post(clients_url, headers=admin, json=body))
        senders.append(email)
    for i, sender in enumerate(senders):  # warm-up: the gateway knows each sender now
        await _send_until_taken(port, make_mail(sender, -1 - i))
    return admin, desk, senders


async def _tickets_in(http: httpx.AsyncClient, url: str, admin: dict[str, str], desk: str) -> int:
    answer = await http.get(
        f"{url}/tickets", params={"department_id": desk, "limit": 1}, headers=admin
    )
    answer.raise_for_status()
    return int(answer.headers["X-Total-Count"])


ROUNDS = 3  # ours and the bare handler alternately, the median of the rounds' ratios


@contextlib.contextmanager
def paused(pids: Sequence[int]) -> Iterator[None]:
    """The services stopped (SIGSTOP) while the bare handler runs its burst: it gets the
    machine the services' idle polling would share (as when it ran after them)."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def measure(
    mails: int, latency_mails: int, profile: Path | None = None, broker: str = "tansu"
) -> tuple[dict[str, float], dict[str, Any]]:
    if profile is not None:  # CPU time, not wall time: the process waits on I/O a lot
        tickets_bench.PROFILED = tickets_bench.PROFILED.replace(
            "import cProfile,", "import time, cProfile,"
        ).replace("cProfile.Profile()", "cProfile.Profile(time.process_time)")
    load_before = os.getloadavg()[0]
    inbound_port = devbroker.free_port()
    ours: list[float] = []
    bare: list[float] = []
    accepted: list[float] = []
    cpu_s: dict[str, float] = {}
    sent = 0
    with contextlib.ExitStack() as stack:
        bootstrap, impl = stack.enter_context(running_broker(broker))
        env = {"INBOUND_SMTP_PORT": str(inbound_port), "KAFKA_IMPL": impl}
        var = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        async with (
            running_stack(bootstrap, var, profile, SERVICES, env, bench="mail") as services,
            running_bare() as bare_port,
            httpx.AsyncClient(timeout=60) as http,
        ):
            urls = services.urls
            admin, desk, senders = await _setup(http, urls, inbound_port)

            async def readable(mail: EmailMessage) -> bool:
                ticket = ticket_of(str(mail["Message-ID"]))
                answer = await http.get(f"{urls['tickets']}/tickets/{ticket}", headers=admin)
                return answer.status_code == 200

            latencies = await one_by_one(
                inbound_port,
                [make_mail(senders[0], n) for n in range(latency_mails)],
                until_ticket=readable,
            )
            with paused(list(services.pids.values())):
                bare_latencies = await one_by_one(
                    bare_port, [make_mail(senders[0], n) for n in range(latency_mails)]
                )
            for _ in range(1 if profile is not None else ROUNDS):
                before = await _tickets_in(http, urls["tickets"], admin, desk)
                shares = [
                    [make_mail(sender, n) for n in range(mails // CONNECTIONS)]
                    for sender in senders
                ]
                count = sum(len(share) for share in shares)
                if profile is not None:
                    os.kill(services.pids["tickets"], signal.SIGUSR1)
                cpu_before = {n: _cpu_seconds(p) for n, p in services.pids.items()}
                started = time.perf_counter()
                accepted_s = await burst(inbound_port, shares)
                if profile is not None:
                    os.kill(services.pids["tickets"], signal.SIGUSR2)
                deadline = time.monotonic() + 300
                while await _tickets_in(http, urls["tickets"], admin, desk) < before + count:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the read model never showed every ticket")
                    await asyncio.sleep(0.01)
                ours.append(count / (time.perf_counter() - started))
                accepted.append(count / accepted_s)
                for n, p in services.pids.items():
                    cpu_s[n] = cpu_s.get(n, 0.0) + _cpu_seconds(p) - cpu_before[n]
                sent += count
                shares = [[make_mail(s, n) for n in range(mails // CONNECTIONS)] for s in senders]
                with paused(list(services.pids.values())):
                    bare.append(count / await burst(bare_port, shares))
    load_after = os.getloadavg()[0]
    figures = {
        "mail.inbound_per_s": round(statistics.median(ours), 1),
        "mail.inbound_accepted_per_s": round(statistics.median(accepted), 1),
        "mail.inbound_to_ticket_p99_ms": round(p99(latencies), 1),
        "mail.bare_inbound_per_s": round(statistics.median(bare), 1),
        "mail.bare_inbound_p99_ms": round(p99(bare_latencies), 1),
        "mail.inbound_vs_bare": round(
            statistics.median(o / b for o, b in zip(ours, bare, strict=True)), 3
        ),
    }
    figures = {figure_name(name, broker): value for name, value in figures.items()}
    meta = {
        "broker": broker,
        "mails_per_round": count,
        "rounds": len(ours),
        "inbound_per_s_rounds": [round(r, 1) for r in ours],
        "bare_inbound_per_s_rounds": [round(r, 1) for r in bare],
        "latency_mails": latency_mails,
        "connections": CONNECTIONS,
        "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(load_after, 2),
        "cpus": os.cpu_count(),
        # CPU each process spent per mail of the bursts (ms): where a mail's work goes.
        "cpu_ms_per_mail": {n: round(seconds * 1000 / sent, 2) for n, seconds in cpu_s.items()},
    }
    return figures, meta


@contextlib.asynccontextmanager
async def running_bare() -> AsyncIterator[int]:
    """``bench.bare_inbound`` (its own process: aiosmtpd, one INSERT per mail) on a fresh
    database; yields its SMTP port."""
    await _admin_sql(
        f'DROP DATABASE IF EXISTS "{BARE_DATABASE}" WITH (FORCE)',
        f'CREATE DATABASE "{BARE_DATABASE}"',
    )
    port = devbroker.free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bare_inbound", "--port", str(port),
        "--dsn", _db_url(BARE_DATABASE), stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError("bench.bare_inbound did not start")
        yield port
    finally:
        process.terminate()
        await process.wait()
        await _admin_sql(f'DROP DATABASE IF EXISTS "{BARE_DATABASE}" WITH (FORCE)')


def run(
    mails: int = 1_000, latency_mails: int = 200, profile: Path | None = None, broker: str = "tansu"
) -> tuple[dict[str, float], dict[str, Any]]:
    """Figures for ``bench/results.json`` and their context for ``results.meta.json``
    (on Apache Kafka, the figures are named ``mail.apache_kafka.…``)."""
    return asyncio.run(measure(mails, latency_mails, profile, broker))


def main() -> None:
    from bench.run import RESULTS_PATH, merge_json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=1_000)
    parser.add_argument("--latency-mails", type=int, default=200)
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results JSON")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--profile", type=Path, help="cProfile the tickets process: PREFIX")
    parser.add_argument("--broker", choices=BROKERS, default="tansu")
    args = parser.parse_args()
    results, meta = run(args.mails, args.latency_mails, args.profile, args.broker)
    goals.print_table(results, "Mail gateway (ratio: ours / bare aiosmtpd INSERT, same run)")
    before, after = meta["loadavg_1m_before"], meta["loadavg_1m_after"]
    print(f"load average (1 min): {before} before, {after} after")
    print(f"CPU per mail (ms, by process): {meta['cpu_ms_per_mail']}")
    if not args.no_write and args.profile is None:
        merge_json(args.output, goals.with_goals(results))
        section = "mail" if args.broker == "tansu" else f"mail.{args.broker}"
        merge_json(args.output.with_name(args.output.stem + ".meta.json"), {section: meta})
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
