"""``make run``: the whole back office on one machine, in the manner of foreman/honcho.

Starts, in this order, each as a child process whose output is shown with a
fixed-width coloured prefix (``identity    | ...``):

* a Kafka-protocol broker (Tansu, in-memory) on 127.0.0.1:$KAFKA_PORT (9092),
  unless ``--no-broker`` (then $KAFKA_BOOTSTRAP_SERVERS is used);
* the SMTP sink (``devtools.smtp_sink``) on 127.0.0.1:$SMTP_PORT (1025), mail
  under ``<var-dir>/mail``;
* the services, each ``python -m services.<name>`` on $<NAME>_PORT (8001-8005),
  with SQLite stores under ``<var-dir>``, which later runs keep using;
* the console (``services.console``, the browser UI over the services' APIs,
  no store of its own) on $CONSOLE_PORT (8000).

Before the services it generates the development keys once into
``$KEYS_DIR`` (default ``<var-dir>/keys``, owner-only) and passes each service
its own, as production does: identity's private key to identity alone.

Then it waits until every service's ``/ready`` answers 200, prints what runs
where, and keeps running. Ctrl-C, SIGTERM or SIGHUP stop the services first
(SIGTERM, SIGKILL after 10 s; a second Ctrl-C kills at once), then the SMTP
sink, then the broker; the exit code is 0 when everything stopped cleanly. A
child that exits on its own, or a service not ready in time, stops everything
with exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import typer
from rich.console import Console
from rich.table import Table

from devtools import devbroker
from shared import catalogue
from shared.access.keys import ensure_keys, identity_key_path, service_key_path

# The console is started like a service; it keeps no store and calls the others over
# HTTP, so it is no entry of the services' catalogue.
PORTS = {**catalogue.default_ports(), "console": 8000}
SERVICES: tuple[str, ...] = tuple(PORTS)
DEFAULT_KAFKA_PORT = 9092
DEFAULT_SMTP_PORT = 1025
DEFAULT_INBOUND_SMTP_PORT = 2525  # the tickets service's mail gateway (INBOUND_SMTP_PORT)
HOST = "127.0.0.1"

SERVICE_GRACE = 10.0  # seconds between SIGTERM and SIGKILL for a service
INFRA_GRACE = 5.0  # the same for the SMTP sink and the broker
SMTP_START_TIMEOUT = 15.0
POLL_INTERVAL = 0.05
LINE_LIMIT = 1 << 20  # longest log line passed through whole
# What a child may exit with after we sent it SIGTERM and still count as a clean stop.
CLEAN_EXIT = frozenset({0, -signal.SIGTERM})
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

Kind = Literal["broker", "smtp", "service"]


class StartupError(Exception):
    """The stack cannot come up (port taken, broker or service not answering)."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Config:
    """Where everything runs; built from the command line and the environment."""

    var_dir: Path
    services: tuple[str, ...]
    service_ports: Mapping[str, int]
    kafka_port: int
    smtp_port: int
    start_broker: bool
    bootstrap: str
    ready_timeout: float
    # The development keys (shared.access.keys): $KEYS_DIR, else <var-dir>/keys.
    keys_dir: Path = Path("var/keys")

    @classmethod
    def build(
        cls,
        var_dir: Path,
        only: str | None,
        no_broker: bool,
        ready_timeout: float,
        environ: Mapping[str, str],
    ) -> Config:
        """Resolve ports (``KAFKA_PORT``, ``SMTP_PORT``, ``IDENTITY_PORT``, ...) and the subset."""
        services = _select(only)
        kafka_port = _port(environ, "KAFKA_PORT", DEFAULT_KAFKA_PORT)
        bootstrap = f"{HOST}:{kafka_port}"
        if no_broker:
            bootstrap = environ.get("KAFKA_BOOTSTRAP_SERVERS") or bootstrap
        return cls(
            var_dir=var_dir,
            services=services,
            service_ports={s: _port(environ, f"{s.upper()}_PORT", PORTS[s]) for s in services},
            kafka_port=kafka_port,
            smtp_port=_port(environ, "SMTP_PORT", DEFAULT_SMTP_PORT),
            start_broker=not no_broker,
            bootstrap=bootstrap,
            ready_timeout=ready_timeout,
            keys_dir=Path(environ.get("KEYS_DIR") or var_dir / "keys"),
        )

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "mail"

    def ports_to_bind(self) -> dict[str, int]:
        """Every port this stack will listen on, by who listens on it."""
        ports = {"smtp": self.smtp_port, **self.service_ports}
        if self.start_broker:
            ports = {"broker": self.kafka_port, **ports}
        return ports

    def service_env(self, name: str, base: Mapping[str, str]) -> dict[str, str]:
        """The environment of ``python -m services.<name>``."""
        var = self.var_dir.as_posix()
        env = dict(base)
        # Readable lines in a terminal; LOG_FORMAT=json in the environment still wins.
        env.setdefault("LOG_FORMAT", "console")
        env.update(
            PYTHONUNBUFFERED="1",  # a pipe would otherwise hold back print()ed lines
            SERVICE_PORT=str(self.service_ports[name]),
            VAR_DIR=var,
            EVENT_STORE_URL=f"sqlite:///{var}/{name}.db",
            READ_MODEL_URL=f"sqlite:///{var}/{name}-read.db",
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            SMTP_HOST=HOST,
            SMTP_PORT=str(self.smtp_port),
        )
        env.update(self.key_env(name))
        if self.start_broker:  # its own broker is Tansu: consumers poll it every 10 ms
            env["KAFKA_IMPL"] = "tansu"
        if "clients" in self.service_ports:  # the tickets and the notifier read clients there
            env.setdefault("CLIENTS_URL", f"http://{HOST}:{self.service_ports['clients']}")
        if name == "console":  # it calls every service there
            for other, port in self.service_ports.items():
                env.setdefault(f"{other.upper()}_URL", f"http://{HOST}:{port}")
            env["CONSOLE_PORT"] = str(self.service_ports[name])
        if "identity" in self.service_ports:  # clients and the notifier (reset links) ask it
            env.setdefault("IDENTITY_URL", f"http://{HOST}:{self.service_ports['identity']}")
        if name == "identity" and "console" in self.service_ports:  # reset links open there
            console = self.service_ports["console"]
            env.setdefault("PASSWORD_RESET_URL", f"http://{HOST}:{console}/reset")
        if "tickets" in self.service_ports:  # the notifier reads replies' texts there
            env.setdefault("TICKETS_URL", f"http://{HOST}:{self.service_ports['tickets']}")
        if name == "tickets":  # its mail gateway: mail to departments' inbound addresses
            env.setdefault("INBOUND_SMTP_PORT", str(DEFAULT_INBOUND_SMTP_PORT))
        return env

    def key_env(self, name: str) -> dict[str, str]:
        """Which keys ``name`` gets, as production passes them: identity's private key to
        identity alone, identity's public key to all, each service its own key and the
        public keys of the services that may call it (paths into ``keys_dir``)."""
        keys = self.keys_dir
        if name == "console":  # calls the APIs with each user's own token: it signs nothing
            return {}
        env = {
            "KEYS_DIR": keys.as_posix(),
            "IDENTITY_PUBLIC_KEY": (keys / "identity.pub").as_posix(),
            "SERVICE_SIGNING_KEY": service_key_path(keys, name).as_posix(),
            "SERVICE_PUBLIC_KEYS": json.dumps(
                {
                    other: service_key_path(keys, other).with_suffix(".pub").as_posix()
                    for other in catalogue.names()
                    if other != name
                }
            ),
        }
        if name == "identity":
            env["IDENTITY_SIGNING_KEY"] = identity_key_path(keys).as_posix()
        return env


def _select(only: str | None) -> tuple[str, ...]:
    if not only:
        return SERVICES
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    unknown = sorted(wanted - set(SERVICES))
    if unknown:
        raise typer.BadParameter(
            f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}",
            param_hint="--only",
        )
    return tuple(s for s in SERVICES if s in wanted)


def _port(environ: Mapping[str, str], variable: str, default: int) -> int:
    raw = environ.get(variable)
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise typer.BadParameter(f"{variable}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise typer.BadParameter(f"{variable}={port} is not a port number")
    return port


def _port_taken(port: int) -> bool:
    # SO_REUSEADDR as the servers use it: a TIME_WAIT left by the last run is no conflict,
    # a listening socket is.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
        return False


# --------------------------------------------------------------------------- output


class Output:
    """Prefixed, coloured lines on stdout; every child's output and our own go through here."""

    PALETTE = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")

    def __init__(self, names: Iterable[str], color: bool) -> None:
        names = list(names)
        self.width = max(len(n) for n in [*names, "devstack"])
        self.color = color
        palette = itertools.cycle(self.PALETTE)
        self.styles = {name: next(palette) for name in names}
        self.styles["devstack"] = "1"
        self.broken = False

    def line(self, name: str, text: str, *, error: bool = False) -> None:
        prefix = f"{name:<{self.width}} |"
        if self.color:
            prefix = f"\x1b[{self.styles.get(name, '0')}m{prefix}\x1b[0m"
            if error:
                text = f"\x1b[1;31m{text}\x1b[0m"
        self.write(f"{prefix} {text}\n")

    def say(self, text: str) -> None:
        self.line("devstack", text)

    def error(self, text: str) -> None:
        self.line("devstack", text, error=True)

    def write(self, text: str) -> None:
        if self.broken:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except OSError:
            # The terminal went away (closed window, `| head`): keep running and draining
            # the children's pipes, just stop printing.
            self.broken = True


def _use_color() -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or sys.stdout.isatty()


# --------------------------------------------------------------------------- children


@dataclass
class Child:
    """One process of the stack."""

    name: str
    kind: Kind
    process: subprocess.Popen[bytes]
    grace: float
    stopping: bool = False  # we asked it to stop, so its exit is expected
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    async def wait(self) -> int:
        # Polling, not waitpid in a thread: cheap at this rate and cancellable at any time.
        while True:
            code = self.process.poll()
            if code is not None:
                return code
            await asyncio.sleep(POLL_INTERVAL)

    def send(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)


def _describe(code: int) -> str:
    """How a process ended, from its Popen return code."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _start_broker_blocking(port: int, log_fd: int) -> subprocess.Popen[bytes]:
    """Start Tansu (in a worker thread: it blocks until the broker listens)."""
    # Ctrl-C in a terminal signals the whole foreground process group, broker included,
    # while the broker has to outlive the services that publish to it. A child inherits
    # the signal mask of the thread that forks it, so SIGINT/SIGHUP blocked here stay
    # blocked in Tansu, and only our SIGTERM stops it.
    blocked = {signal.SIGINT, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        return devbroker.start_tansu(port, log_fd)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        os.close(log_fd)


# --------------------------------------------------------------------------- the stack


@dataclass
class DevStack:
    """Starts, supervises and stops the broker, the SMTP sink and the services."""

    config: Config
    out: Output
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    children: list[Child] = field(default_factory=list)
    exit_code: int = 0
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _hurry: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _pumps: list[asyncio.Task[None]] = field(default_factory=list)
    _broker_start: asyncio.Future[subprocess.Popen[bytes]] | None = None

    async def run(self) -> int:
        """Bring everything up, run until a signal or a failure, stop everything; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        boot = asyncio.create_task(self._boot(), name="boot")
        try:
            await self._done.wait()
        finally:
            boot.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await boot
            await self._shutdown()
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        return self.exit_code

    # ----------------------------------------------------------------- events

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._done.is_set():
            if not self._hurry.is_set():
                self.out.error(f"{sig.name} again: killing what is left")
                self._hurry.set()
            return
        self.out.say(f"{sig.name}: stopping")
        self._done.set()

    def _fail(self, message: str) -> None:
        # Also after a stop began: a child dying before we asked it to is worth a line and
        # makes the stop unclean.
        self.out.error(message)
        self.exit_code = 1
        self._done.set()

    async def _watch(self, child: Child) -> None:
        code = await child.wait()
        if not child.stopping:
            how = _describe(code)
            self._fail(f"{child.name} (pid {child.pid}) {how} unexpectedly; stopping everything")

    # ----------------------------------------------------------------- start

    async def _boot(self) -> None:
        try:
            started = time.monotonic()
            self._preflight()
            await asyncio.to_thread(self.config.mail_dir.mkdir, parents=True, exist_ok=True)
            # Once: a later run keeps the keys (tokens and signed facts stay valid).
            await asyncio.to_thread(ensure_keys, self.config.keys_dir, catalogue.names())
            if self.config.start_broker:
                await self._start_broker()
            else:
                self.out.say(f"using the broker at {self.config.bootstrap} (--no-broker)")
            await self._start_smtp()
            for name in self.config.services:
                self._start_service(name)
            await self._wait_ready()
            self._print_table(time.monotonic() - started)
        except StartupError as exc:
            self._fail(str(exc))
        except Exception as exc:  # anything else still has to stop what did start
            self._fail(f"cannot start: {type(exc).__name__}: {exc}")

    def _preflight(self) -> None:
        ports = self.config.ports_to_bind()
        seen: dict[int, str] = {}
        for who, port in ports.items():
            if port in seen:
                raise StartupError(f"{who} and {seen[port]} are both set to port {port}")
            seen[port] = who
        taken = [f"{who} ({port})" for who, port in ports.items() if _port_taken(port)]
        if taken:
            raise StartupError(
                f"port(s) already in use: {', '.join(taken)}. Another `make run`? "
                "Stop it, or move ports with KAFKA_PORT, SMTP_PORT, IDENTITY_PORT, ..."
            )

    async def _start_broker(self) -> None:
        port = self.config.kafka_port
        self.out.say(f"starting the broker (Tansu, in-memory) on {HOST}:{port}")
        read_fd, write_fd = os.pipe()
        self._pump("broker", read_fd)
        self._broker_start = asyncio.get_running_loop().run_in_executor(
            None, _start_broker_blocking, port, write_fd
        )
        try:
            # Shielded: if we are cancelled meanwhile, the thread still hands the process
            # to _shutdown, which stops it, instead of leaving an orphan broker.
            process = await asyncio.shield(self._broker_start)
        except TimeoutError:
            raise StartupError(f"the broker does not listen on {HOST}:{port}") from None
        self._adopt_broker(process)

    def _adopt_broker(self, process: subprocess.Popen[bytes]) -> None:
        if any(c.process is process for c in self.children):
            return
        self._adopt(Child("broker", "broker", process, INFRA_GRACE))

    async def _start_smtp(self) -> None:
        port = self.config.smtp_port
        self.out.say(f"starting the SMTP sink on {HOST}:{port}, mail to {self.config.mail_dir}")
        argv = [sys.executable, "-m", "devtools.smtp_sink", "--host", HOST, "--port", str(port)]
        argv += ["--dir", str(self.config.mail_dir)]
        env = {**self.environ, "PYTHONUNBUFFERED": "1"}
        self._spawn("smtp", "smtp", argv, env, INFRA_GRACE)
        deadline = time.monotonic() + SMTP_START_TIMEOUT
        while True:
            try:
                _, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                if time.monotonic() > deadline:
                    raise StartupError(f"the SMTP sink does not listen on {HOST}:{port}") from None
                await asyncio.sleep(POLL_INTERVAL)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    def _start_service(self, name: str) -> None:
        port = self.config.service_ports[name]
        self.out.say(f"starting {name} on {HOST}:{port}")
        argv = [sys.executable, "-m", f"services.{name}"]
        self._spawn(
            name, "service", argv, self.config.service_env(name, self.environ), SERVICE_GRACE
        )

    def _spawn(
        self, name: str, kind: Kind, argv: Sequence[str], env: Mapping[str, str], grace: float
    ) -> Child:
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=subprocess.STDOUT,
                env=dict(env),
                # Its own process group: a Ctrl-C in the terminal reaches only us, and we
                # decide the order in which things stop.
                process_group=0,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._pump(name, read_fd)
        return self._adopt(Child(name, kind, process, grace))

    def _adopt(self, child: Child) -> Child:
        self.children.append(child)
        self._tasks.append(asyncio.create_task(self._watch(child), name=f"watch:{child.name}"))
        return child

    def _pump(self, name: str, read_fd: int) -> None:
        self._pumps.append(asyncio.create_task(self._copy_lines(name, read_fd), name=f"log:{name}"))

    async def _copy_lines(self, name: str, read_fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while True:
                try:
                    raw = await reader.readline()
                except ValueError:  # longer than LINE_LIMIT: asyncio dropped it
                    self.out.line(name, f"[a line longer than {LINE_LIMIT} bytes was left out]")
                    continue
                if not raw:
                    return
                self.out.line(name, raw.decode("utf-8", "replace").rstrip("\r\n"))
        finally:
            transport.close()

    async def _wait_ready(self) -> None:
        last: dict[str, str] = {name: "no answer yet" for name in self.config.services}
        started = time.monotonic()

        async def ready(client: httpx.AsyncClient, name: str) -> None:
            url = f"http://{HOST}:{self.config.service_ports[name]}/ready"
            while True:
                try:
                    response = await client.get(url)
                except httpx.HTTPError as exc:
                    last[name] = type(exc).__name__
                else:
                    if response.status_code == 200:
                        self.out.say(f"{name} is ready ({time.monotonic() - started:.1f} s)")
                        del last[name]
                        return
                    last[name] = f"{response.status_code} {response.text[:300]}"
                await asyncio.sleep(0.25)

        # trust_env=False: an HTTP(S)_PROXY of the developer's must not see 127.0.0.1 calls.
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            try:
                async with asyncio.timeout(self.config.ready_timeout):
                    await asyncio.gather(*(ready(client, n) for n in self.config.services))
            except TimeoutError:
                details = "; ".join(f"{name}: {answer}" for name, answer in last.items())
                raise StartupError(
                    f"not ready after {self.config.ready_timeout:g} s: {details}"
                ) from None

    def _print_table(self, seconds: float) -> None:
        table = Table(title=f"back office up in {seconds:.1f} s", title_justify="left")
        table.add_column("part")
        table.add_column("where")
        table.add_column("pid", justify="right")
        pids = {c.name: str(c.pid) for c in self.children}
        if self.config.start_broker:
            table.add_row("broker", f"kafka://{self.config.bootstrap}", pids.get("broker", ""))
        else:
            table.add_row("broker", f"kafka://{self.config.bootstrap} (external)", "")
        table.add_row(
            "smtp",
            f"smtp://{HOST}:{self.config.smtp_port} -> {self.config.mail_dir}/",
            pids["smtp"],
        )
        for name in self.config.services:
            table.add_row(name, f"http://{HOST}:{self.config.service_ports[name]}", pids[name])
        console = Console(highlight=False, soft_wrap=True)
        self.out.write("\n")
        if not self.out.broken:
            with contextlib.suppress(OSError):
                console.print(table)
                stores = f"{self.config.var_dir}/*.db"
                console.print(
                    "Each service: /docs, /health, /ready, /metrics. "
                    f"Stores: {stores} (kept between runs). Ctrl-C stops everything."
                )
                if "console" in self.config.services:
                    console.print(
                        f"The console: http://{HOST}:{self.config.service_ports['console']} "
                        "(log in as admin there)."
                    )
                if "identity" in self.config.services:
                    console.print(
                        "Log in as admin: POST /auth/login at identity; the password is "
                        f"ADMIN_PASSWORD, or the one in {self.config.var_dir}/admin_password."
                    )
        self.out.write("\n")

    # ----------------------------------------------------------------- stop

    async def _shutdown(self) -> None:
        if self._broker_start is not None:
            # The broker may still be starting in its thread; it has to be stopped too.
            with contextlib.suppress(Exception):
                self._adopt_broker(await self._broker_start)
        for kind in ("service", "smtp", "broker"):
            await self._stop([c for c in self.children if c.kind == kind])
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Let the last lines ("service.stopped", ...) through; the pipes close with the children.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await asyncio.gather(*self._pumps, return_exceptions=True)
        for task in self._pumps:
            task.cancel()
        # Killed children were announced when killed; an odd exit code is worth a line too.
        unclean = [
            c for c in self.children if c.stopping and c.process.returncode not in CLEAN_EXIT
        ]
        for child in unclean:
            if not child.killed:
                how = _describe(child.process.returncode)
                self.out.error(f"{child.name} (pid {child.pid}) {how} while stopping")
        if unclean and self.exit_code == 0:
            self.exit_code = 1
        if self.exit_code == 0:
            self.out.say("stopped cleanly")
        else:
            self.out.error(f"stopped; exit code {self.exit_code}")

    async def _stop(self, group: list[Child]) -> None:
        """SIGTERM the group, give it its grace period, SIGKILL whatever is still there."""
        running = [c for c in group if c.running]
        if not running:
            return
        for child in running:
            child.stopping = True
            child.send(signal.SIGTERM)
        grace = max(c.grace for c in running)
        all_exited = asyncio.ensure_future(asyncio.gather(*(c.wait() for c in running)))
        hurry = asyncio.ensure_future(self._hurry.wait())
        contenders: list[asyncio.Future[Any]] = [all_exited, hurry]
        await asyncio.wait(contenders, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        hurry.cancel()
        for child in running:
            if child.running:
                self.out.error(f"{child.name} (pid {child.pid}) still running: SIGKILL")
                child.killed = True
                child.send(signal.SIGKILL)
        await all_exited


# --------------------------------------------------------------------------- CLI

cli = typer.Typer(add_completion=False, help=__doc__, rich_markup_mode=None)


@cli.command()
def main(
    var_dir: Annotated[
        Path, typer.Option("--var-dir", help="SQLite stores and mail; kept between runs.")
    ] = Path("var"),
    only: Annotated[
        str | None,
        typer.Option("--only", help="Start only these services, e.g. identity,tickets."),
    ] = None,
    no_broker: Annotated[
        bool,
        typer.Option("--no-broker", help="Use KAFKA_BOOTSTRAP_SERVERS; start no broker."),
    ] = False,
    ready_timeout: Annotated[
        float, typer.Option("--ready-timeout", help="Seconds to wait for every /ready.")
    ] = 60.0,
) -> None:
    """Run the broker, the SMTP sink and the services until Ctrl-C."""
    config = Config.build(var_dir, only, no_broker, ready_timeout, os.environ)
    out = Output(["broker", "smtp", *config.services], _use_color())
    code = asyncio.run(DevStack(config, out).run())
    raise typer.Exit(code)


if __name__ == "__main__":
    cli()
