"""``GET /tickets/search``: tickets by their text, only within what the caller may see.

Rules it keeps:

* The caller's scope is the queue's (``visible_condition``, the same slices as
  ``GET /tickets``): a ticket the caller may not see is never found, whatever
  it says.
* Text is matched in the subject and in the messages: for staff also in
  internal notes (they read them on the ticket), for clients only in what the
  client sees (``visible_to_client``).
* PostgreSQL: full-text search (``to_tsvector('simple', …) @@
  websearch_to_tsquery('simple', q)``: words in any language, quoted phrases,
  ``-word``), through the GIN indexes on subjects and entry bodies
  (``projections.queue``; a test EXPLAINs the statement); SQLite (the
  embedded default): every word as a substring, scanning.
* The newest changed first, at most ``limit``; the answer has the fields of
  ``GET /tickets``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import TextualSelect, text

from services.tickets.api.tickets import Caller, _scope, _ticket_page
from services.tickets.projections.queries import COLUMNS, Scope, visible_condition
from services.tickets.projections.queue import BODY_TSVECTOR, SUBJECT_TSVECTOR, tickets
from shared.http.api import CaughtUp, ReadDB

router = APIRouter()

MAX_WORDS = 8


def _matching(postgres: bool, client: bool, words: list[str]) -> tuple[str, dict[str, str]]:
    """The text condition over ``tickets`` and its parameters."""
    shown = " AND e.visible_to_client" if client else ""
    if postgres:
        # Two index lookups joined by ticket id (the GIN indexes of ``projections.queue``,
        # whose expressions these are): an OR with a correlated EXISTS would scan instead.
        query = "websearch_to_tsquery('simple', :q)"
        return (
            "tickets.ticket_id IN ("
            f"SELECT s.ticket_id FROM tickets s WHERE {SUBJECT_TSVECTOR} @@ {query}"
            f" UNION SELECT e.ticket_id FROM ticket_entries e WHERE {BODY_TSVECTOR} @@ {query}"
            f"{shown})",
            {"q": " ".join(words)},
        )
    conditions, values = [], {}
    for i, word in enumerate(words):
        pattern = "%" + word.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        values[f"w{i}"] = pattern + "%"
        conditions.append(
            f"(lower(coalesce(tickets.subject, '')) LIKE :w{i} ESCAPE '\\'"
            " OR EXISTS (SELECT 1 FROM ticket_entries e WHERE e.ticket_id = tickets.ticket_id"
            f"{shown} AND lower(coalesce(e.body, '')) LIKE :w{i} ESCAPE '\\'))"
        )
    return "(" + " AND ".join(conditions) + ")", values


def search_statement(
    scope: Scope, postgres: bool, client: bool, words: list[str], limit: int
) -> tuple[TextualSelect, dict[str, Any]]:
    """The search's SQL and parameters (the tests EXPLAIN this very statement)."""
    visible, values = visible_condition(scope)
    matching, more = _matching(postgres, client, words)
    sql = (
        f"SELECT {', '.join(COLUMNS)} FROM tickets WHERE {visible} AND {matching}"
        f" ORDER BY updated_at DESC, ticket_id LIMIT {int(limit)}"
    )
    statement = text(sql).columns(*(tickets.c[name] for name in COLUMNS))
    return statement, {**values, **more}


@router.get("/tickets/search", tags=["tickets"])
async def search_tickets(
    db: ReadDB,
    _: CaughtUp,
    principal: Caller,
    q: Annotated[str, Query(min_length=2, max_length=200, description="words to find")],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """Tickets whose subject or messages contain ``q``, among those the caller may see
    (staff: ``tickets.view``); the newest changed first. ``X-Total-Count``: how many
    were found (at most ``limit``)."""
    scope = await _scope(db, principal)
    words = q.split()[:MAX_WORDS]
    postgres = db.engine.dialect.name == "postgresql"
    statement, values = search_statement(scope, postgres, principal.kind == "client", words, limit)
    async with db.reading() as conn:
        rows = list(await conn.execute(statement, values))
    return _ticket_page(rows, len(rows))
