"""Commands answer {id, version, position}; ``?min_position=`` waits for the read models."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import text

from shared.application.commands import CommandAnswer
from shared.domain.events import NewEvent
from shared.http import api
from shared.http.api import CaughtUp
from shared.runtime.service import ServiceSpec, create_app
from shared.runtime.settings import ServiceSettings
from tests.http_util import serving

router = APIRouter()


@router.post("/notes", status_code=201)
async def add_note(request: Request) -> CommandAnswer:
    store = request.app.state.runtime.store
    result = await store.append("note-1", [NewEvent(type="NoteAdded", data={})])
    return CommandAnswer.of("note-1", result)


@router.get("/notes/count")
async def count_notes(request: Request, _: CaughtUp) -> dict[str, int]:
    db = request.app.state.runtime.db
    async with db.engine.connect() as conn:
        row = await conn.execute(
            text("SELECT count FROM event_type_counts WHERE type = 'NoteAdded'")
        )
        return {"count": int(row.scalar() or 0)}


@pytest.fixture
def app(postgres_url: str) -> FastAPI:
    settings = ServiceSettings(
        event_store_url=postgres_url, read_model_url=postgres_url, relay_enabled=False
    )
    return create_app(ServiceSpec(name="tickets", routers=[router]), settings)


async def test_a_read_with_min_position_sees_the_command(app: FastAPI) -> None:
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        for expected in range(1, 21):
            answer = await http.post("/notes")
            assert answer.status_code == 201
            body = answer.json()
            assert set(body) == {"id", "version", "position"} and body["version"] == expected
            read = await http.get("/notes/count", params={"min_position": body["position"]})
            assert read.json() == {"count": expected}


async def test_a_position_beyond_the_store_is_bad_input_and_a_stuck_read_model_is_503(
    app: FastAPI, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "READ_WAIT_SECONDS", 0.3)
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        # No command ever answered this position: the caller's mistake, not a wait.
        beyond = await http.get("/notes/count", params={"min_position": 10**9})
        assert beyond.status_code == 422, beyond.text
        assert beyond.json()["error"]["field"] == "min_position"
        # A read model that cannot apply (its table locked by another session)
        # is really behind: 503 with Retry-After, and the read goes through later.
        blocker = await asyncpg.connect(postgres_url)
        try:
            locked = blocker.transaction()
            await locked.start()
            await blocker.execute("LOCK TABLE event_type_counts IN ACCESS EXCLUSIVE MODE")
            position = (await http.post("/notes")).json()["position"]
            read = await http.get("/notes/count", params={"min_position": position})
            assert read.status_code == 503
            assert read.json()["error"]["code"] == "read_model_behind"
            assert read.headers["retry-after"] == "1"
            await locked.rollback()
        finally:
            await blocker.close()
        monkeypatch.setattr(api, "READ_WAIT_SECONDS", 5.0)
        later = await http.get("/notes/count", params={"min_position": position})
        assert later.status_code == 200 and later.json()["count"] >= 1
        bad = await http.get("/notes/count", params={"min_position": "soon"})
        assert bad.status_code == 422
        assert bad.json()["error"]["fields"][0]["field"] == "query.min_position"
