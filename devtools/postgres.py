"""A PostgreSQL server for the tests and the bench: the one configured, else a throwaway cluster.

Rules it keeps:

* A server that answers at ``PG_DSN`` (or ``TEST_POSTGRES_URL``, default
  ``postgresql://postgres@127.0.0.1:5432/postgres``) with a working login is used
  as it is: nothing is started, nothing is stopped.
* Otherwise a throwaway cluster is made from the machine's PostgreSQL binaries
  (``initdb`` and ``pg_ctl`` on PATH, from ``pg_config --bindir`` or under
  ``/usr/lib/postgresql/*/bin``) in a temporary folder, with trust login on
  127.0.0.1 only and a free port, and removed when the command ends, however it
  ends. ``initdb`` refuses to run as root, so as root the cluster belongs to the
  ``postgres`` user (Debian's package makes it).
* The command runs with ``TEST_POSTGRES_URL``, ``BENCH_POSTGRES_URL`` and
  ``PG_DSN`` naming the server it got, and its exit code is this command's.

Usage: ``python -m devtools.postgres -- pytest -q`` (what ``make test`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shared.devbroker import free_port

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CLUSTER_USER = "postgres"
# Settings for a cluster that lives for one test run: speed over durability, and
# room for several services with small pools plus the tests' own connections.
THROWAWAY_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "300",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "256MB",
    "max_wal_size": "2GB",
}


def configured_url() -> str:
    return os.environ.get("PG_DSN") or os.environ.get("TEST_POSTGRES_URL") or DEFAULT_URL


def answers(url: str, timeout: float = 3.0) -> bool:
    """True when a PostgreSQL server at ``url`` accepts a login and a query."""
    import asyncpg

    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(url, timeout=timeout)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, ValueError):
            return False
        try:
            await connection.fetchval("SELECT 1")
            return True
        finally:
            await connection.close()

    return asyncio.run(probe())


def binaries_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``; a clear error when none is installed."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    ]
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise SystemExit(
        "No PostgreSQL server answers and no PostgreSQL binaries are installed: "
        "install Debian's `postgresql` package (apt-get install postgresql), "
        "or point PG_DSN at a server."
    )


def _as_cluster_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", CLUSTER_USER, "--", *command]


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a new cluster on a free port; yield its URL; stop and delete it afterwards."""
    bindir = binaries_dir()
    folder = Path(tempfile.mkdtemp(prefix="pg-throwaway-"))
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam(CLUSTER_USER)
        for path in (folder, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    log = folder / "server.log"
    try:
        subprocess.run(
            _as_cluster_user(
                [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "--no-sync"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        options = " ".join(f"-c {key}={value}" for key, value in THROWAWAY_SETTINGS.items())
        subprocess.run(
            _as_cluster_user(
                [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                 "-o", f"-p {port} -k {sockets} {options}", "start"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_cluster_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                  "-w", "stop"]),
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """The configured server when it answers, else a throwaway cluster for the block."""
    url = configured_url()
    if answers(url):
        yield url
        return
    print(f"devtools.postgres: nothing answers at {url}; starting a throwaway cluster",
          file=sys.stderr)
    with throwaway_cluster() as started:
        yield started


def run_with_server(command: list[str]) -> int:
    with postgres_server() as url:
        env = {**os.environ, "TEST_POSTGRES_URL": url, "BENCH_POSTGRES_URL": url, "PG_DSN": url}
        child = subprocess.Popen(command, env=env)
        # Ctrl-C reaches the child through the terminal; wait for it so the
        # cluster is stopped only after the child has let go of it.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return child.wait()
        finally:
            signal.signal(signal.SIGINT, previous)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    return run_with_server(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
