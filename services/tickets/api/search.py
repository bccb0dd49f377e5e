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
  ``-word``); SQLite (the embedded default): every word as a substring.
* The newest changed first, at most ``limit``; the answer has the fields of
  ``GET /tickets``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import text

from services.tickets.api.tickets import Caller, _scope, _ticket_page
from services.tickets.projections.queries import COLUMNS, visible_condition
from services.tickets.projections.queue import tickets
from shared.http.api import CaughtUp, ReadDB

router = APIRouter()

MAX_WORDS = 8


def _matching(postgres: bool, client: bool, words: list[str]) -> tuple[str, dict[str, str]]:
    """The text condition over ``tickets`` and its parameters."""
    shown = " AND e.visible_to_client" if client else ""
    if postgres:
        query = "websearch_to_tsquery('simple', :q)"
        return (
            f"(to_tsvector('simple', coalesce(tickets.subject, '')) @@ {query}"
            " OR EXISTS (SELECT 1 FROM ticket_entries e WHERE e.ticket_id = tickets.ticket_id"
            f"{shown} AND to_tsvector('simple', coalesce(e.body, '')) @@ {query}))",
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
    visible, values = visible_condition(scope)
    postgres = db.engine.dialect.name == "postgresql"
    matching, more = _matching(postgres, principal.kind == "client", words)
    sql = (
        f"SELECT {', '.join(COLUMNS)} FROM tickets WHERE {visible} AND {matching}"
        f" ORDER BY updated_at DESC, ticket_id LIMIT {int(limit)}"
    )
    statement = text(sql).columns(*(tickets.c[name] for name in COLUMNS))
    async with db.reading() as conn:
        rows = list(await conn.execute(statement, {**values, **more}))
    return _ticket_page(rows, len(rows))
