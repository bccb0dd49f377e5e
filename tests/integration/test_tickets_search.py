"""``GET /tickets/search``: tickets by their text, only within what the caller may see
(the services of ``test_tickets``: PostgreSQL full-text search over real HTTP); and
that PostgreSQL answers the search statements, the tickets' and the clients'
``?name=``, from their GIN indexes."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from services.clients.projections.queries import ClientFilter, client_query, ordered
from services.tickets.api.search import search_statement
from services.tickets.projections.queries import Scope
from shared.readmodel.database import ReadModelDB
from tests.integration import test_tickets
from tests.integration.test_tickets import (
    Headers,
    Stack,
    client,
    department,
    open_ticket,
    project,
    staff,
)

pytestmark = pytest.mark.timeout(180)

stack = test_tickets.stack  # the same stack fixture (one per module)


async def found(stack: Stack, headers: Headers, q: str, position: int) -> set[str]:
    answer = await stack.tickets.get(
        "/tickets/search", params={"q": q, "min_position": position}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert int(answer.headers["X-Total-Count"]) == len(answer.json())
    return {t["id"] for t in answer.json()}


async def test_search_finds_text_only_where_the_caller_may_look(stack: Stack) -> None:
    provider = await project(stack)
    hosting = await department(stack, "Hosting", providers=[provider])
    network = await department(stack, "Network", providers=[provider])
    _, hoster = await staff(stack, "finder", ["tickets.view", "tickets.internal_note"], [hosting])
    _, netter = await staff(stack, "other", ["tickets.view"], [network])
    _, customer = await client(stack, "seeker", provider)
    _, stranger = await client(stack, "stranger", provider)
    word = f"zebra{uuid.uuid4().hex[:6]}"  # one word nobody else wrote

    in_subject = await open_ticket(stack, customer, hosting, subject=f"Mail {word} bounces")
    in_body = await open_ticket(stack, customer, hosting, body=f"The {word} host is down")
    elsewhere = await open_ticket(stack, customer, network, subject=f"{word} routing")
    unrelated = await open_ticket(stack, customer, hosting, subject="Nothing to see")
    note = await stack.tickets.post(
        f"/tickets/{unrelated['id']}/messages",
        json={"body": f"internal: {word} suspected", "internal": True},
        headers=hoster,
    )
    assert note.status_code == 201, note.text
    last = note.json()["position"]

    # Staff of Hosting: its tickets by subject, message and internal note; not Network's.
    assert await found(stack, hoster, word, last) == {
        in_subject["id"], in_body["id"], unrelated["id"],
    }  # fmt: skip
    assert await found(stack, netter, word, last) == {elsewhere["id"]}
    assert await found(stack, stack.admin, word, last) >= {
        in_subject["id"], in_body["id"], elsewhere["id"], unrelated["id"],
    }  # fmt: skip
    # The client: their own tickets, never by an internal note's text.
    assert await found(stack, customer, word, last) == {
        in_subject["id"], in_body["id"], elsewhere["id"],
    }  # fmt: skip
    assert await found(stack, stranger, word, last) == set()
    # Several words: all of them.
    assert await found(stack, hoster, f"{word} bounces", last) == {in_subject["id"]}


async def test_search_needs_words_and_the_right_to_view(stack: Stack) -> None:
    _, nobody = await staff(stack, "viewless", [])
    refused = await stack.tickets.get("/tickets/search", params={"q": "mail"}, headers=nobody)
    assert refused.status_code == 403
    short = await stack.tickets.get("/tickets/search", params={"q": "m"}, headers=stack.admin)
    assert short.status_code == 422
    assert short.json()["error"]["field"] == "q"


async def _plan(db: ReadModelDB, sql: str, values: dict[str, object]) -> str:
    """PostgreSQL's plan for ``sql``, with sequential scans priced out: an index the
    statement can use shows up whatever the table's size; one it cannot, never."""
    async with db.transaction() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        rows = await conn.execute(text("EXPLAIN " + sql), values)
        return "\n".join(str(r[0]) for r in rows)


async def test_ticket_search_uses_the_text_indexes_on_postgresql(stack: Stack) -> None:
    assert stack.db.dialect == "postgresql", "the search indexes are PostgreSQL's"
    for client_view in (False, True):
        scope = (
            Scope(clients=("someone",))
            if client_view
            else Scope(departments=("d1", "d2"), assignee_id="s1")
        )
        statement, values = search_statement(scope, True, client_view, ["zebra", "mail"], 50)
        plan = await _plan(stack.db, statement.element.text, values)
        assert "ix_tickets_subject_fts" in plan, plan
        assert "ix_ticket_entries_body_fts" in plan, plan


async def test_client_search_by_name_uses_the_trigram_index_on_postgresql(stack: Stack) -> None:
    assert stack.clients_app is not None
    db: ReadModelDB = stack.clients_app.state.runtime.db
    assert db.dialect == "postgresql", "the trigram index is PostgreSQL's"
    query = ordered(client_query(ClientFilter(name="Example.COM")), "login").limit(50)
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    plan = await _plan(db, sql, {})
    assert "ix_clients_search_trgm" in plan, plan
