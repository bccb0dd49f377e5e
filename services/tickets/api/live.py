"""``GET /tickets/live``: the caller's queue as server-sent events (the console's live queue).

Rules it keeps:

* The stream shows only what ``GET /tickets`` would show the caller: each
  change is read back through the same queue query (``page_query``) in the
  caller's scope, never sent from the event itself. A ticket transferred away
  from the caller's departments simply stops appearing.
* The caller is authorised again at every wake-up (a change of the read model
  or the keep-alive tick): a token that expired, a session ended, a right
  revoked end the stream with ``event: end`` naming the reason.
* Each event is ``event: ticket`` with the queue row as JSON (the fields of
  ``GET /tickets``), sent when a ticket's version is newer than the one the
  stream last sent; ``id:`` is the read model's position.
* No text of the event log travels here that the caller could not read with
  ``GET /tickets``; the stream holds no state besides what it has sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from services.tickets.api.tickets import _TICKET_COLUMNS, Caller, _scope
from services.tickets.projections.queries import QueueFilter, page_query
from shared.access import Denied
from shared.http.api import ApiError, ReadDB, bearer_token, client_address

router = APIRouter()

KEEP_ALIVE_SECONDS = 15.0
WINDOW = 50  # the latest changed tickets a wake-up reads back


def _frame(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head.encode() + b"data: " + orjson.dumps(data, option=orjson.OPT_UTC_Z) + b"\n\n"


@router.get("/tickets/live", tags=["tickets"], response_class=StreamingResponse)
async def live_queue(
    request: Request,
    db: ReadDB,
    principal: Caller,
    keep_alive: Annotated[float, Query(ge=0.2, le=60)] = KEEP_ALIVE_SECONDS,
) -> StreamingResponse:
    """Server-sent events: a ``ticket`` event whenever a ticket the caller may see is
    opened or changes (staff need ``tickets.view``; clients see their own tickets)."""
    runtime = request.app.state.runtime
    runner = runtime.runners["ticket_queue"]
    token, address = bearer_token(request), client_address(request)
    scope = await _scope(db, principal)  # 403 before the stream starts

    async def latest(current: Any) -> list[Any]:
        page = page_query(current, QueueFilter(), "-updated", WINDOW, 0)
        if page is None:
            return []
        async with db.reading() as conn:
            return list(await conn.execute(*page))

    async def stream() -> AsyncIterator[bytes]:
        nonlocal scope
        sent = {row.ticket_id: row.version for row in await latest(scope)}
        position = runner.position
        yield b"retry: 2000\n\n"
        while not await request.is_disconnected():
            advanced = await runner.wait_for(position + 1, keep_alive)
            try:
                scope = await _scope(db, runtime.authorizer.authorize(token, address, None))
            except Denied as denied:
                yield _frame("end", {"code": denied.code, "message": denied.message})
                return
            except ApiError as refused:
                yield _frame("end", refused.detail)
                return
            if not advanced:
                yield b": keep-alive\n\n"
                continue
            position = runner.position
            for row in reversed(await latest(scope)):  # oldest change first
                if sent.get(row.ticket_id, 0) >= row.version:
                    continue
                sent[row.ticket_id] = row.version
                m = row._mapping
                ticket = {"id": m["ticket_id"], **{k: m[k] for k in _TICKET_COLUMNS}}
                yield _frame("ticket", ticket, position)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
