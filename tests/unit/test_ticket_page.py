"""The queue page is written without models: it must read exactly as ``list[TicketOut]``."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
from pydantic import TypeAdapter

from services.tickets.api.tickets import TicketOut, _ticket, _ticket_page


def row(**values: Any) -> SimpleNamespace:
    base: dict[str, Any] = {
        "ticket_id": "t-1",
        "number": 1042,
        "client_id": "c-1",
        "company_id": None,
        "project_id": "p-1",
        "department_id": "d-1",
        "category_id": None,
        "subject": "Сайт не работает",
        "status": "open",
        "origin": "client",
        "message_ref": None,
        "replies_forbidden": False,
        "paid": True,
        "assignee_id": None,
        "opened_at": datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
        "updated_at": datetime(2026, 12, 1, 8, 0, 1, 123456, tzinfo=UTC),
        "waiting_since": datetime(2026, 12, 1, 8, 0, 1, 500, tzinfo=UTC),
        "due_at": None,
        "closed_at": None,
        "close_reason": None,
        "messages": 1,
        "last_message_at": datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
        "rating": None,
        "version": 1,
        "waiting_key": datetime(2026, 12, 1, 8, 0, tzinfo=UTC),  # columns no page shows
        **values,
    }
    return SimpleNamespace(_mapping=base)


def test_the_page_reads_as_the_models_would_serialise_it() -> None:
    rows = [row(), row(ticket_id="t-2", status="closed", rating=5, company_id="co-1")]
    answer = _ticket_page(rows, 7)
    as_models = TypeAdapter(list[TicketOut]).dump_json([_ticket(r) for r in rows])
    assert orjson.loads(answer.body) == orjson.loads(as_models)
    assert answer.headers["x-total-count"] == "7"
    assert answer.media_type == "application/json"
