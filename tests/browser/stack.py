"""The real back office for browser tests: identity, departments, clients, tickets, the
notifier (mailing to the SMTP sink of ``make run``) and the console as processes on fresh
PostgreSQL databases and the session's broker, plus a world made through their public
APIs (a project, two support departments, staff of each, a client, a response template).

Everything waits on what the services answer (never a fixed sleep): a department is
used once the tickets service offers it to the client, a staff member once their
queue answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devtools.devbroker import free_port
from tests.conftest import fresh_database
from tests.support.keys import keys_dir

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("identity", "departments", "clients", "tickets", "notifier")
ADMIN_PASSWORD = "console-admin-password"
READY_TIMEOUT = 120.0


@dataclass
class Person:
    id: str
    login: str
    password: str


@dataclass
class World:
    """What the tests work with; every name unique to this run."""

    project: str
    hosting: str  # a support department for the project
    hosting_name: str
    network: str  # another support department
    network_name: str
    hosting_staff: Person
    network_staff: Person
    client: Person
    client_person: str
    template_name: str


@dataclass
class Stack:
    urls: dict[str, str]
    console: str
    logs: Path
    http: httpx.AsyncClient
    admin: dict[str, str] = field(default_factory=dict)

    @property
    def mail(self) -> Path:
        """Where the SMTP sink keeps the mails the notifier sent (``*.eml``)."""
        return self.logs.parent / "mail"

    def log_tail(self) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            parts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    async def call(
        self, method: str, service: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        return await self.http.request(
            method, self.urls[service] + path, headers=headers or self.admin, **kw
        )


async def eventually(
    call: Callable[[], Awaitable[httpx.Response]],
    ok: Callable[[httpx.Response], bool],
    what: str,
    timeout: float = 60,
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        answer = await call()
        if ok(answer):
            return answer
        assert time.monotonic() < deadline, f"{what}: {answer.status_code} {answer.text[:300]}"
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running(bootstrap: str, var: Path) -> AsyncIterator[Stack]:
    """The four services and the console as processes; stopped (SIGTERM) afterwards."""
    secret = uuid.uuid4().hex * 2
    prefix = f"c{uuid.uuid4().hex[:8]}."
    ports = {name: free_port() for name in (*SERVICES, "console", "smtp")}
    urls = {name: f"http://127.0.0.1:{ports[name]}" for name in (*SERVICES, "console")}
    logs = var / "logs"
    logs.mkdir(parents=True)
    processes: list[subprocess.Popen[bytes]] = []
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CONSOLE_SECRET": secret,
        # The run's keys: each service finds identity's public key and its own there.
        "KEYS_DIR": str(keys_dir()),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TOPIC_PREFIX": prefix,
        "DB_POOL_SIZE": "3",
        "LOG_LEVEL": "WARNING",
        **{f"{name.upper()}_URL": url for name, url in urls.items()},
    }
    async with contextlib.AsyncExitStack() as exits:
        databases = {name: await exits.enter_async_context(fresh_database()) for name in SERVICES}
        try:
            with (logs / "smtp.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(  # noqa: ASYNC220 - started once, never awaited
                        [sys.executable, "-m", "devtools.smtp_sink", "--host", "127.0.0.1",
                         "--port", str(ports["smtp"]), "--dir", str(var / "mail")],
                        env=base, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                    )
                )  # fmt: skip
            for name in (*SERVICES, "console"):
                env = {**base, "VAR_DIR": str(var / name)}
                if name == "console":
                    env["CONSOLE_PORT"] = str(ports[name])
                else:
                    env.update(
                        SERVICE_PORT=str(ports[name]),
                        EVENT_STORE_URL=databases[name],
                        READ_MODEL_URL=databases[name],
                        ADMIN_PASSWORD=ADMIN_PASSWORD,
                        # The console passes the browser's address on.
                        TRUSTED_PROXIES='["127.0.0.1/32"]',
                        SMTP_HOST="127.0.0.1",
                        SMTP_PORT=str(ports["smtp"]),
                        # The page a password reset's mailed link opens: the console's.
                        PASSWORD_RESET_URL=urls["console"] + "/reset",
                    )
                with (logs / f"{name}.log").open("wb") as log:
                    processes.append(
                        subprocess.Popen(  # noqa: ASYNC220 - started once, never awaited
                            [sys.executable, "-m", f"services.{name}"],
                            env=env,
                            cwd=ROOT,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    )
            async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
                stack = Stack(urls, urls["console"], logs, http)
                for name, url in urls.items():
                    await eventually(
                        lambda url=url: _ready(http, url),  # type: ignore[misc]
                        lambda r: r.status_code == 200,
                        f"{name} never became ready:\n{stack.log_tail()}",
                        READY_TIMEOUT,
                    )
                yield stack
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def _ready(http: httpx.AsyncClient, url: str) -> httpx.Response:
    try:
        return await http.get(f"{url}/ready")
    except httpx.TransportError:
        return httpx.Response(599)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def login(stack: Stack, login: str, password: str) -> dict[str, str]:
    answer = await stack.http.post(
        stack.urls["identity"] + "/auth/login", json={"login": login, "password": password}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _created(answer: httpx.Response) -> str:
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def make_world(stack: Stack) -> World:
    stack.admin = await login(stack, "admin", ADMIN_PASSWORD)
    for service, path in (("clients", "/projects"), ("departments", "/departments")):
        await eventually(
            lambda s=service, p=path: stack.call("GET", s, p),  # type: ignore[misc]
            lambda r: r.status_code == 200,
            f"{service} knows admin",
        )
    await eventually(
        lambda: stack.call("GET", "tickets", "/tickets"),
        lambda r: r.status_code == 200,
        "tickets knows admin",
    )
    project = _created(await stack.call("POST", "clients", "/projects", json={"name": "Hosting"}))

    async def department(name: str, description: str, sort: int) -> tuple[str, str]:
        title = unique(name)
        body = {
            "name": {"en": title, "ru": f"{title} (ru)"},
            "support": {
                "enabled": True, "providers": [project], "sort": sort, "description": description,
            },
        }  # fmt: skip
        made = _created(await stack.call("POST", "departments", "/departments", json=body))
        return made, title

    hosting, hosting_name = await department("Hosting", "Servers and sites", 1)
    network, network_name = await department("Network", "Routing and DNS", 2)

    async def staff(name: str, department_id: str) -> Person:
        person = Person("", unique(name), f"{name}-password-2026")
        body = {
            "login": person.login, "password": person.password,
            "full_name": {"en": name.title(), "ru": name}, "departments": [department_id],
        }  # fmt: skip
        made = await eventually(  # identity learns new departments from their topic
            lambda: stack.call("POST", "identity", "/staff", json=body),
            lambda r: r.status_code != 422,
            "identity knows the department",
        )
        person.id = _created(made)
        for right in ("tickets.view", "tickets.reply", "tickets.close", "clients.view"):
            granted = await stack.call(
                "POST", "identity", f"/staff/{person.id}/rights", json={"right": right}
            )
            assert granted.status_code in (200, 201), granted.text
        token = await login(stack, person.login, person.password)
        await eventually(
            lambda: stack.call("GET", "tickets", "/tickets", headers=token),
            lambda r: r.status_code == 200,
            "tickets knows the staff member",
        )
        return person

    hosting_staff = await staff("hosting", hosting)
    network_staff = await staff("network", network)

    client = Person("", unique("client"), "Client-pass-2026")
    person = f"Anna {uuid.uuid4().hex[:4]}"
    body = {
        "login": client.login, "password": client.password, "email": f"{client.login}@example.com",
        "country": "DE", "customer_status": "individual", "contact_person": person,
        "project_id": project,
    }  # fmt: skip
    made = await eventually(  # the clients service learns new projects from its projection
        lambda: stack.call("POST", "clients", "/clients", json=body),
        lambda r: r.status_code != 422,
        "clients knows the project",
    )
    client.id = _created(made)
    client_token = await login(stack, client.login, client.password)
    await eventually(
        lambda: stack.call("GET", "tickets", "/support/departments", headers=client_token),
        lambda r: r.status_code == 200 and {hosting, network} <= {d["id"] for d in r.json()},
        "tickets offers both departments to the client",
    )
    template_name = unique("Greeting")
    template = {"name": template_name, "body": "Dear %client_person%, we are on it."}
    _created(await stack.call("POST", "tickets", "/templates", json=template))
    return World(
        project, hosting, hosting_name, network, network_name, hosting_staff, network_staff,
        client, person, template_name,
    )  # fmt: skip
