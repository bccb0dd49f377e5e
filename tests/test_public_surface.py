"""The public surface held against committed snapshots: a change to it is a deliberate one.

* every service's route table (method and path), from its FastAPI app;
* the operator CLI's commands and their options (``python -m shared.cli``);
* the event schemas of ``docs/events`` (``tests/unit/test_event_schemas.py``
  regenerates them from the models and compares).

After a deliberate change: ``UPDATE_SNAPSHOTS=1 make test PYTEST_ARGS=tests/test_public_surface.py``
rewrites ``tests/snapshots/*.json``; the diff is what reviewers read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import typer.main

from shared import catalogue
from shared.runtime.service import ServiceSpec, create_app

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _matches_snapshot(name: str, current: Any) -> None:
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(current, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.exists(), f"no snapshot {path}: run with UPDATE_SNAPSHOTS=1 once"
    assert json.loads(path.read_text()) == current, (
        f"the public surface changed ({path.name}); if deliberate, UPDATE_SNAPSHOTS=1"
    )


def _flattened(routes: Any, prefix: str = "") -> list[str]:
    """``METHOD /path`` of routes, through included routers (kept apart by FastAPI)."""
    table = []
    for route in routes:
        included = getattr(route, "include_context", None)
        if included is not None:
            table += _flattened(included.included_router.routes, prefix + included.prefix)
            continue
        for method in sorted((getattr(route, "methods", None) or set()) - {"HEAD"}):
            table.append(f"{method} {prefix}{route.path}")
    return table


def route_table(spec: ServiceSpec) -> list[str]:
    """``METHOD /path`` of every route the service's app answers (HEAD aside)."""
    return sorted(_flattened(create_app(spec).routes))


@pytest.mark.parametrize("service", catalogue.names())
def test_route_table_is_the_committed_one(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAR_DIR", str(tmp_path))  # the app writes a development secret there
    spec = catalogue.spec(service)
    assert isinstance(spec, ServiceSpec)
    _matches_snapshot(f"routes.{service}", route_table(spec))


def _options(command: Any) -> list[str]:
    return sorted(
        "/".join(p.opts) if p.opts[0].startswith("-") else f"<{p.name}>" for p in command.params
    )


def test_cli_commands_and_options_are_the_committed_ones() -> None:
    from shared.cli import cli

    group: Any = typer.main.get_command(cli)  # typer's own click: no click.Group
    commands = {name: _options(cmd) for name, cmd in sorted(group.commands.items())}
    _matches_snapshot("cli", commands)
