"""Ratios, their goals (issue 21) and how rounds become one figure.

A figure measured alone says little on a machine whose speed drifts by 2x from
one run to the next; a ratio to a peer or a limit measured in the same run
does. Every ratio is ``ours / reference`` oriented so that 1.0 means "as fast
as the reference" and higher is better (for latencies: reference p99 / ours).

Rounds are interleaved (ours, reference, ours, reference, ...), each ratio is
taken within its round, and the figure is the median of those per-round
ratios: a ratio never pairs two different rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

# name -> (sign, bound); ratios first, then the absolute goals they go with.
GOALS: dict[str, tuple[str, float]] = {
    "authz.check_vs_casbin": (">=", 10.0),
    "authz.cold_vs_casbin": (">=", 2.0),
    "tickets.open_vs_bare": (">=", 0.5),
    "tickets.queue_vs_sql": ("", 0.0),
    # The console's pages over the API call each wraps, as issue 19 states them:
    # page p99 / call p99, lower is better (the one pair oriented that way).
    "console.queue_vs_api": ("<=", 2.0),
    "console.ticket_vs_api": ("<=", 2.0),
    "replay.vs_kernel_path": (">=", 0.7),
    "notifier.mails_vs_bare": (">=", 0.5),
    "mail.inbound_vs_bare": (">=", 0.3),
    "event_store.sqlite.append_vs_eventsourcing": (">=", 1.5),
    "event_store.postgres.append_vs_eventsourcing": (">=", 1.5),
    "event_store.postgres.append_vs_copy": (">=", 0.5),
    "replay.events_per_s": (">=", 50_000.0),
    "notifier.mails_per_s": (">=", 500.0),
    "notifier.event_to_mail_p99_ms": ("<=", 100.0),
    "mail.inbound_per_s": (">=", 200.0),
    "mail.inbound_to_ticket_p99_ms": ("<=", 500.0),
    "tickets.open_rps": (">=", 500.0),
    "tickets.open_p99_ms": ("<=", 50.0),
    "tickets.queue_p99_ms_1m": ("<=", 10.0),
    "console.queue_render_p99_ms": ("<=", 50.0),
    "console.ticket_render_p99_ms": ("<=", 50.0),
    "event_store.postgres.read_all_events_per_s": (">=", 100_000.0),
    "authz.revocation_p99_ms": ("<=", 200.0),
    "projection.command_to_read_model_p99_ms": ("<=", 100.0),
}


def is_ratio(name: str) -> bool:
    return "_vs_" in name or ".vs_" in name


def rounded(results: Mapping[str, float]) -> dict[str, float]:
    """Ratios and fractions of a core to 3 decimals, everything else to 1: more digits
    would be noise (a core's fraction to 1 decimal would hide a 2x difference)."""
    return {
        k: round(v, 3) if is_ratio(k) or k.endswith(".cores") else round(v, 1)
        for k, v in results.items()
    }


def median_ratio(ours: Sequence[float], reference: Sequence[float]) -> float:
    """The median of per-round ratios ``ours[i] / reference[i]`` (same round on both sides)."""
    if len(ours) != len(reference) or not ours:
        raise ValueError("one figure per round on both sides")
    return statistics.median(o / r for o, r in zip(ours, reference, strict=True))


def met(name: str, value: float) -> bool | None:
    """Whether ``value`` meets ``name``'s goal; None when it has none."""
    sign, bound = GOALS.get(name, ("", 0.0))
    if not sign:
        return None
    return value >= bound if sign == ">=" else value <= bound


def goal_text(name: str, value: float) -> str:
    sign, bound = GOALS.get(name, ("", 0.0))
    if not sign:
        return "–"
    mark = "✓" if met(name, value) else "✗"
    return f"{'≥' if sign == '>=' else '≤'} {bound:,g} {mark}"


def with_goals(results: Mapping[str, float]) -> dict[str, float]:
    """``results`` plus, for every figure with a goal, ``<name>.goal`` and ``<name>.met``
    (1.0 or 0.0), so that ``results.json`` says what was aimed at and whether it was hit."""
    out = dict(results)
    for name, value in results.items():
        verdict = met(name, value)
        if verdict is not None:
            out[f"{name}.goal"] = GOALS[name][1]
            out[f"{name}.met"] = float(verdict)
    return out


def ordered(results: Mapping[str, float]) -> list[str]:
    """Ratios first (in the goals' order, then any other), then the rest."""
    names = [n for n in results if not n.endswith((".goal", ".met"))]
    ratios = [n for n in GOALS if n in results and is_ratio(n)]
    ratios += [n for n in names if is_ratio(n) and n not in ratios]
    return ratios + [n for n in names if n not in ratios]


def print_table(results: Mapping[str, float], title: str) -> None:
    """One table: the ratios first with their goals, then every other figure."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("goal")
    for name in ordered(results):
        value = results[name]
        shown = f"{value:,.3f}" if is_ratio(name) else f"{value:,.1f}"
        table.add_row(name, shown, goal_text(name, value))
    Console().print(table)
