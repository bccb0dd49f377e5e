"""The limit beside ``tickets.open_rps``: a bare FastAPI + asyncpg endpoint.

``POST /tickets`` takes the same JSON body as the tickets service (validated
by a pydantic model), inserts one row per request into one table and answers
201 with the same shape (``id``, ``version``, ``position``, ``message_id``).
No token, no event, no read model, no broker: what one uvicorn worker on this
machine does at best for a request that writes one row to PostgreSQL.

``bench.tickets`` starts it as a process (``python -m bench.bare_tickets``,
``BARE_DATABASE_URL``, ``BARE_PORT``), uvicorn as the services run it, and
drives it with the same clients at the same concurrency (``tickets.open_vs_bare``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

POOL_SIZE = 10
TABLE = """
CREATE TABLE IF NOT EXISTS bare_tickets (
    position      bigserial PRIMARY KEY,
    id            uuid      NOT NULL,
    department_id text      NOT NULL,
    subject       text      NOT NULL,
    body          text      NOT NULL,
    message_id    uuid      NOT NULL
)
"""
INSERT = (
    "INSERT INTO bare_tickets (id, department_id, subject, body, message_id)"
    " VALUES ($1, $2, $3, $4, $5) RETURNING position"
)


class OpenIn(BaseModel):
    department_id: str = Field(min_length=1, max_length=64)
    category_id: str | None = None
    subject: str = Field(min_length=1, max_length=255)
    body: str = Field(min_length=1, max_length=65_536)


class OpenedOut(BaseModel):
    id: str
    version: int
    position: int
    message_id: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(
        os.environ["BARE_DATABASE_URL"], min_size=POOL_SIZE, max_size=POOL_SIZE
    )
    await pool.execute(TABLE)
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/ready")
async def ready() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/tickets", status_code=201)
async def open_ticket(body: OpenIn, request: Request) -> OpenedOut:
    ticket_id, message_id = uuid.uuid4(), uuid.uuid4()
    pool: asyncpg.Pool = request.app.state.pool
    position = await pool.fetchval(
        INSERT, ticket_id, body.department_id, body.subject, body.body, message_id
    )
    return OpenedOut(id=str(ticket_id), version=1, position=position, message_id=str(message_id))


def main() -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["BARE_PORT"]), log_config=None)


if __name__ == "__main__":
    main()
