"""The event schemas shipped in docs/events are what the code publishes (DESIGN §3)."""

from __future__ import annotations

import json

import pytest

from shared import catalogue
from shared.cli import SCHEMA_DIR, render_schemas


@pytest.mark.parametrize("service", sorted(catalogue.names()))
def test_shipped_schemas_match_the_models(service: str) -> None:
    rendered = render_schemas(service)
    shipped = SCHEMA_DIR / f"{service}.json"
    if rendered is None:
        assert not shipped.exists(), f"{shipped} describes events {service} does not have"
        return
    assert shipped.exists(), "run: .venv/bin/python -m shared.cli schemas"
    assert shipped.read_text() == rendered, "stale; run: .venv/bin/python -m shared.cli schemas"


def test_sealed_fields_are_marked_for_consumers() -> None:
    clients = json.loads((SCHEMA_DIR / "clients.json").read_text())
    registered = clients["events"]["ClientRegistered"]["schema"]["properties"]
    assert registered["email"]["x-sealed"] is True
    assert "x-sealed" not in registered["country"]
    identity = json.loads((SCHEMA_DIR / "identity.json").read_text())
    assert {"StaffAccessChanged", "SessionEnded"} <= set(identity["events"])
