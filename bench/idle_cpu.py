"""The idle CPU of the whole stack on each broker: ``make run``'s five services, SMTP sink, broker.

What it measures: the stack (``python -m devtools.devstack`` on free ports and a
temporary var dir) is started, waited for until every service's ``/ready`` answers
200, left to settle, and then the CPU time (user + system, from ``/proc/<pid>/stat``)
of every process of the stack, the broker included, is read at the start and the
end of ``--seconds`` of idleness: nothing is sent to it meanwhile. The figure is
cores used (CPU seconds per second), in total and per process.

Two runs, one per broker:

* ``tansu``: the stack's own embedded broker (its consumers poll every 10 ms, 100 once quiet,
  ``shared.messaging.kafka_clients``);
* ``apache_kafka``: a real Apache Kafka 4.x (``devtools.apache_kafka``), the stack
  started with ``--no-broker``; its consumers long-poll.

``python -m bench.idle_cpu [--seconds 30] [--settle 10] [--only tansu|apache_kafka]``
prints the figures and the JSON ``{"idle_cpu.<broker>.cores": ...}`` that
``bench.run`` keeps in ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from devtools.devbroker import free_port

SERVICES = ("identity", "departments", "tickets", "clients", "notifier")
TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 180.0


def _cpu_ticks(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _name(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = [w.decode(errors="replace") for w in words if w]
    for marker in ("-m",):
        if marker in text and text.index(marker) + 1 < len(text):
            return text[text.index(marker) + 1]
    if any(w == "kafka.Kafka" for w in text):
        return "apache-kafka"
    return Path(text[0]).name if text else "?"


def _tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                raw = (entry / "stat").read_text()
                parents[int(entry.name)] = int(raw[raw.rindex(")") + 2 :].split()[1])
    found, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


@contextlib.contextmanager
def running_stack(broker: str) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """The stack on ``broker``; yields its devstack process and the extra pids (a broker
    started here)."""
    ports = {f"{s.upper()}_PORT": str(free_port()) for s in SERVICES}
    env = {**os.environ, **ports, "SMTP_PORT": str(free_port()), "KAFKA_PORT": str(free_port())}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    extra: list[int] = []
    with contextlib.ExitStack() as stack:
        var = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="idle-cpu-")))
        command = [sys.executable, "-m", "devtools.devstack", "--var-dir", str(var / "var"),
                   "--ready-timeout", str(READY_TIMEOUT)]  # fmt: skip
        if broker == "apache_kafka":
            from devtools.apache_kafka import ApacheKafka

            kafka = stack.enter_context(ApacheKafka())
            assert kafka.process is not None
            extra.append(kafka.process.pid)
            env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "KAFKA_IMPL": "apache"}
            command.append("--no-broker")
        log = (var / "devstack.log").open("wb")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_ready([int(p) for p in ports.values()], process, var / "devstack.log")
            yield process, extra
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def _wait_until_ready(ports: list[int], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = set(ports)
    with httpx.Client(timeout=2.0) as http:
        while waiting:
            if process.poll() is not None:
                raise RuntimeError(f"the stack exited: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready: {waiting}")
            for port in list(waiting):
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                        waiting.discard(port)
            time.sleep(0.5)


def measure(broker: str, seconds: float, settle: float) -> dict[str, float]:
    """Cores the idle stack on ``broker`` uses: ``total`` and per process."""
    with running_stack(broker) as (process, extra):
        time.sleep(settle)
        pids = _tree(process.pid) + extra
        before = {pid: _cpu_ticks(pid) for pid in pids}
        started = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        used: dict[str, float] = {}
        for pid, first in before.items():
            last = _cpu_ticks(pid)
            if first is None or last is None:
                continue
            name = _name(pid)
            used[name] = used.get(name, 0.0) + (last - first) / TICKS / elapsed
    return {"total": sum(used.values()), **dict(sorted(used.items()))}


def run(seconds: float = 30.0, settle: float = 10.0, only: str | None = None) -> dict[str, float]:
    """``idle_cpu.<broker>.cores`` for each broker (``bench.run`` keeps them)."""
    figures: dict[str, float] = {}
    for broker in ("tansu", "apache_kafka"):
        if only and broker != only:
            continue
        found = measure(broker, seconds, settle)
        print(f"idle CPU on {broker}: {found['total']:.3f} cores over {seconds:.0f} s", flush=True)
        for name, cores in found.items():
            if name != "total":
                print(f"  {name:<24} {cores:.3f}")
        figures[f"idle_cpu.{broker}.cores"] = round(found["total"], 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--only", choices=("tansu", "apache_kafka"))
    options = parser.parse_args()
    print(json.dumps(run(options.seconds, options.settle, options.only)))


if __name__ == "__main__":
    main()
