"""A/B of the PostgreSQL adapter: a git revision's (HEAD) against the working tree's.

``python -m bench.pg_horizon_ab [--events N] [--rounds 3] [--old-rev HEAD]``
(not a pytest module; the name only keeps it beside its tests). Each round runs
both adapters, in alternating order, on the same seeded workload as
``bench.run``:

* ``append`` and ``read_all`` events/s: ``bench.run``'s own PostgreSQL phase
  (4 writers, batches of 10; a catch-up read of the settled log in pages of 5,000);
* ``read_all_busy``: the same catch-up read while an unrelated transaction with
  an id is open and in every snapshot's running list (the new horizon then reads
  ``pg_locks`` on each page; the old one gives the same rows, it is only slower);
* ``poll_us`` / ``poll_busy_us``: mean time of a subscription's idle poll
  (``read_all`` at the head, nothing new), without and with that transaction.

Figures are the medians of the rounds both variants completed; ``new / old`` is the
median of the ratios taken within each round. Nothing is written to ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
from rich.progress import Progress
from rich.table import Table

from bench import run as bench_run
from shared.eventstore import postgres as new_postgres

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "bench_pg_horizon_ab"
POLLS = 2_000


def load_old_adapter(rev: str) -> ModuleType:
    """``shared/eventstore/postgres.py`` as of ``rev``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{rev}:shared/eventstore/postgres.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = "bench_old_postgres_adapter"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(source, f"{rev}:shared/eventstore/postgres.py", "exec"), module.__dict__)
    return module


async def _time_polls(store: Any, head: int) -> float:
    await store.read_all(head, 500)
    gc.collect()
    start = time.perf_counter()
    for _ in range(POLLS):
        if await store.read_all(head, 500):
            raise RuntimeError("a poll at the head found events")
    return (time.perf_counter() - start) / POLLS * 1e6


async def bench_reads(
    store_class: Any, dsn: str, work: bench_run.Workload, meter: bench_run.Meter
) -> dict[str, float]:
    """Reads over a settled log, with and without an unrelated open transaction."""
    db = await bench_run.create_database(dsn, DB_NAME)
    try:
        store = await store_class.open(db, pool_size=bench_run.WRITERS)
        try:

            async def append(batch: bench_run.Batch) -> object:
                return await store.append(batch.stream, batch.events)

            fill = meter.task("fill", work.events + work.warmup_events)
            await bench_run.run_async_writers(work.warmup + work.timed, append, meter, fill)
            await bench_run._admin(db, "VACUUM ANALYZE events")
            total = work.events + work.warmup_events
            head = await store.head_position()
            quiet_poll = await _time_polls(store, head)
            unrelated = await asyncpg.connect(db)
            try:
                await unrelated.execute("BEGIN")
                await unrelated.execute("SELECT pg_current_xact_id()")
                # One more transaction ends after it, so it is below every snapshot's xmax.
                await bench_run._admin(db, "SELECT pg_current_xact_id()")
                task = meter.task("read_all busy", total)
                busy_seconds = await bench_run.time_read_all(store.read_all, total, meter, task)
                busy_poll = await _time_polls(store, head)
            finally:
                await unrelated.close()
        finally:
            await store.close()
    finally:
        await bench_run.drop_database(dsn, DB_NAME)
    return {
        "read_all_busy_events_per_s": total / busy_seconds,
        "poll_us": quiet_poll,
        "poll_busy_us": busy_poll,
    }


async def one_variant(store_class: Any, dsn: str, events: int) -> dict[str, float]:
    work = bench_run.make_workload(events)
    setattr(bench_run, "PostgresEventStore", store_class)  # noqa: B010 - patch for this run
    bench_run.DB_OURS = DB_NAME  # not the name a concurrent `make bench` uses
    with Progress(transient=True, refresh_per_second=2) as progress:
        meter = bench_run.Meter(progress)
        figures = await bench_run.bench_ours_postgres(dsn, work, meter, analyze=False)
        figures = {k.rsplit(".", 1)[-1]: v for k, v in figures.items()}
        figures.update(await bench_reads(store_class, dsn, work, meter))
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_horizon_ab", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old-rev", default="HEAD", help="git revision of the old adapter")
    parser.add_argument("--dsn", default=bench_run.DEFAULT_DSN)
    args = parser.parse_args(argv)
    variants = {
        f"old ({args.old_rev})": load_old_adapter(args.old_rev).PostgresEventStore,
        "new (working tree)": new_postgres.PostgresEventStore,
    }
    # One dict per round: the variants that completed it, each with its figures.
    rounds: list[dict[str, dict[str, float]]] = []
    for n in range(args.rounds):
        order = list(variants) if n % 2 == 0 else list(reversed(variants))
        rounds.append({})
        for name in order:
            try:
                figures = asyncio.run(one_variant(variants[name], args.dsn, args.events))
            except RuntimeError as exc:
                # The old horizon, held back by another transaction on the server,
                # may leave the catch-up read incomplete: that round counts for nothing.
                print(f"round {n + 1} {name}: failed: {exc}", flush=True)
                continue
            rounds[-1][name] = figures
            shown = ", ".join(f"{k}={v:,.1f}" for k, v in figures.items())
            print(f"round {n + 1} {name}: {shown}", flush=True)
    old_name, new_name = list(variants)
    paired = [r for r in rounds if old_name in r and new_name in r]
    if not paired:
        raise SystemExit("no round that both adapters completed")
    table = Table(
        title=f"median of {len(paired)} rounds, {args.events:,} events;"
        " new / old: the median of the per-round ratios"
    )
    table.add_column("figure")
    for name in variants:
        table.add_column(name, justify="right")
    table.add_column("new / old", justify="right")
    for key in paired[0][old_name]:
        old = statistics.median(r[old_name][key] for r in paired)
        new = statistics.median(r[new_name][key] for r in paired)
        ratio = statistics.median(r[new_name][key] / r[old_name][key] for r in paired)
        table.add_row(key, f"{old:,.1f}", f"{new:,.1f}", f"{ratio:.3f}")
    bench_run.console.print(table)


if __name__ == "__main__":
    main()
