"""``make run`` end to end: ``python -m devtools.devstack`` on free ports and a temporary var dir.

Brings the stack up, checks every service answers ``/ready``, ``/health`` and
``/metrics``, sends one mail through the SMTP sink, stops it with SIGINT (exit
code 0, no child left), then starts it again on the same var dir: the SQLite
files of the first run are still the same files, the keys it generated (owner-only)
are the same keys, and everything is ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from devtools.devbroker import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads child PIDs in /proc"),
]

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("identity", "departments", "tickets", "clients", "notifier", "console")
STORED = SERVICES[:-1]  # the console keeps no store
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# The modules devstack runs with ``python -m``, by the name it gives them; plus the broker.
MODULES = {"smtp": "devtools.smtp_sink", **{name: f"services.{name}" for name in SERVICES}}
EXPECTED_CHILDREN = {"broker", *MODULES}


@dataclass
class Stack:
    """A running ``python -m devtools.devstack`` and everything it printed so far."""

    process: asyncio.subprocess.Process
    ports: Mapping[str, int]
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    children: dict[int, int] = field(default_factory=dict)  # pid -> start time (reuse guard)

    def output(self) -> str:
        return "\n".join(self.lines[-200:])

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service.upper()]}{path}"


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process; None when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may hold spaces: split after the last ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def _children_of(pid: int) -> dict[int, str]:
    """The live children of ``pid`` and their command lines."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[0] != pid:
            continue
        with contextlib.suppress(OSError):
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


def _alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] == started


async def _copy_output(stack: Stack) -> None:
    assert stack.process.stdout is not None
    async for raw in stack.process.stdout:
        stack.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))


async def start_stack(var_dir: Path, ports: Mapping[str, int]) -> Stack:
    # Without the harness's KEYS_DIR: `make run` makes its own keys in <var-dir>/keys.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KAFKA_BOOTSTRAP_SERVERS", "KEYS_DIR")
    }
    env.update({f"{name}_PORT": str(port) for name, port in ports.items()})
    env["NO_COLOR"] = "1"  # plain prefixes, whatever the CI sets
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devtools.devstack",
        "--var-dir",
        str(var_dir),
        "--ready-timeout",
        str(READY_TIMEOUT),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    stack = Stack(process, ports)
    stack.reader = asyncio.create_task(_copy_output(stack))
    return stack


async def wait_until_ready(stack: Stack, client: httpx.AsyncClient) -> None:
    """Every service's /ready answers 200, within READY_TIMEOUT."""
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = set(SERVICES)
    while waiting:
        if stack.process.returncode is not None:
            pytest.fail(f"devstack exited with {stack.process.returncode}:\n{stack.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"not ready after {READY_TIMEOUT} s: {sorted(waiting)}\n{stack.output()}")
        for service in sorted(waiting):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(stack.url(service, "/ready"))).status_code == 200:
                    waiting.discard(service)
        await asyncio.sleep(0.25)


async def wait_for_line(stack: Stack, pattern: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        for line in stack.lines:
            if regex.search(line):
                return line
        await asyncio.sleep(0.1)
    pytest.fail(f"no line matches {pattern!r}:\n{stack.output()}")


def _name_of(cmdline: str) -> str | None:
    argv = cmdline.split()
    if argv and "tansu" in Path(argv[0]).name:
        return "broker"
    return next((name for name, module in MODULES.items() if module in argv), None)


def record_children(stack: Stack) -> dict[str, int]:
    """Remember devstack's children (for the no-orphan check); name -> pid."""
    by_name: dict[str, int] = {}
    for pid, cmdline in _children_of(stack.process.pid).items():
        stat = _stat(pid)
        if stat is not None:
            stack.children[pid] = stat[1]
        name = _name_of(cmdline)
        if name is not None:
            by_name[name] = pid
    return by_name


async def stop_with_sigint(stack: Stack) -> int:
    stack.process.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(STOP_TIMEOUT):
            code = await stack.process.wait()
            assert stack.reader is not None
            await stack.reader
    except TimeoutError:
        pytest.fail(f"devstack still running {STOP_TIMEOUT} s after SIGINT:\n{stack.output()}")
    return code


async def cleanup(stack: Stack) -> None:
    """After a failure: stop devstack and whatever it left, by PID."""
    if stack.process.returncode is None:
        record_children(stack)
        stack.process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await stack.process.wait()
        except TimeoutError:
            stack.process.kill()
            await stack.process.wait()
    for pid, started in stack.children.items():
        if _alive(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if stack.reader is not None:
        stack.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stack.reader


async def check_up(stack: Stack, client: httpx.AsyncClient) -> None:
    """Ready, healthy, with metrics, the table printed, and the expected seven children."""
    await wait_until_ready(stack, client)
    for service in SERVICES:
        health = await client.get(stack.url(service, "/health"))
        assert health.status_code == 200, (service, health.text)
        metrics = await client.get(stack.url(service, "/metrics"))
        assert metrics.status_code == 200, (service, metrics.text[:300])
        assert metrics.headers["content-type"].startswith("text/plain")
    await wait_for_line(stack, r"Ctrl-C stops everything")
    children = record_children(stack)
    assert set(children) == EXPECTED_CHILDREN, (children, _children_of(stack.process.pid))
    assert len(stack.children) == len(EXPECTED_CHILDREN), _children_of(stack.process.pid)
    for name, pid in children.items():
        # The table names each part with its PID.
        await wait_for_line(stack, rf"[│|] {name} +[│|].*[│|] +{pid} [│|]")


async def test_devstack_runs_stops_and_keeps_its_data(tmp_path: Path) -> None:
    names = [name.upper() for name in ("kafka", "smtp", *SERVICES)]
    free: set[int] = set()
    while len(free) < len(names):  # free_port() may hand out the same port twice
        free.add(free_port())
    ports = dict(zip(names, sorted(free), strict=True))
    var_dir = tmp_path / "var"
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        # ---- first run
        first = await start_stack(var_dir, ports)
        try:
            await check_up(first, client)
            # Each child's lines carry its name as a fixed-width prefix.
            await wait_for_line(first, r"^identity +\| ")
            await wait_for_line(first, r"^broker +\| ")

            subject = f"devstack test {uuid.uuid4().hex[:8]}"
            message = EmailMessage()
            message["From"] = "notifier@backoffice.test"
            message["To"] = "client@example.test"
            message["Subject"] = subject
            message.set_content("Your ticket was answered.\n")
            await aiosmtplib.send(message, hostname="127.0.0.1", port=ports["SMTP"], timeout=10)
            mails = sorted((var_dir / "mail").glob("*.eml"))
            assert len(mails) == 1, mails
            assert f"Subject: {subject}" in mails[0].read_text()
            await wait_for_line(
                first, rf"^smtp +\| mail from=notifier@backoffice\.test .*{subject}"
            )

            code = await stop_with_sigint(first)
            assert code == 0, first.output()
            assert "stopped cleanly" in first.output()
            left = [pid for pid, started in first.children.items() if _alive(pid, started)]
            assert left == [], f"children still alive after devstack exited: {left}"
        finally:
            await cleanup(first)

        # The keys, made once, owner-only: identity's pair and each service's own.
        keys = {p.relative_to(var_dir).as_posix(): p.read_bytes() for p in _keys(var_dir)}
        assert {f"keys/services/{s}.key" for s in STORED} | {"keys/identity.key"} <= set(keys)
        keys_dir = var_dir / "keys"
        for path in [keys_dir, *keys_dir.rglob("*")]:  # the directories and the files
            assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"

        stores = {path.name: path.stat().st_ino for path in var_dir.glob("*.db")}
        expected = {f"{s}.db" for s in STORED} | {f"{s}-read.db" for s in STORED}
        assert expected <= set(stores), sorted(stores)

        # ---- second run, same var dir and ports
        second = await start_stack(var_dir, ports)
        try:
            await check_up(second, client)
            # The very same files (same inodes): nothing deleted or recreated them.
            assert {name: (var_dir / name).stat().st_ino for name in stores} == stores
            # The same keys: tokens and signed facts of the first run stay valid.
            again = {p.relative_to(var_dir).as_posix(): p.read_bytes() for p in _keys(var_dir)}
            assert again == keys
            assert len(list((var_dir / "mail").glob("*.eml"))) == 1
            code = await stop_with_sigint(second)
            assert code == 0, second.output()
            left = [pid for pid, started in second.children.items() if _alive(pid, started)]
            assert left == [], f"children still alive after devstack exited: {left}"
        finally:
            await cleanup(second)


def _keys(var_dir: Path) -> list[Path]:
    return sorted(p for p in (var_dir / "keys").rglob("*") if p.is_file())
