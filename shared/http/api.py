"""HTTP helpers every service's API uses: typed errors, read-your-writes, ``require``.

* A command answers ``{"id", "version", "position"}``
  (``shared.application.CommandAnswer``, what the application layer returns).
* A read may pass ``?min_position=p`` (a position this same service returned)
  to wait, up to ``READ_WAIT_SECONDS``, until its read models have applied it.
* ``ApiError`` carries the error format of API.md and, for invalid input, the
  field it is about.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict

from shared.access.control import Denied, Principal
from shared.eventstore import EventStore
from shared.readmodel.database import ReadModelDB

READ_WAIT_SECONDS = 5.0
HEAD_GRACE_SECONDS = 1.0


class ApiError(HTTPException):
    """An error in the format of API.md: ``{"error": {"code", "message", "field"?}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        detail: dict[str, Any] = {"code": code, "message": message, **extra}
        if field is not None:
            detail["field"] = field
        super().__init__(status_code=status, detail=detail, headers=headers)


def invalid(field: str, message: str) -> ApiError:
    """422 naming the field, for checks pydantic cannot make (unknown ids, rules)."""
    return ApiError(422, "invalid_input", f"{field}: {message}", field=field)


async def caught_up(
    request: Request,
    min_position: Annotated[
        int | None,
        Query(ge=0, description="wait until the read models have applied this position"),
    ] = None,
) -> None:
    """Dependency of read endpoints: read-your-writes without polling.

    A position the store has not reached is bad input (422 naming
    ``min_position``), not a read model behind: no command answered it. The
    store's readable head may trail a commit by a moment, so it is given
    ``HEAD_GRACE_SECONDS`` to get there first. A read model really behind is
    503 ``read_model_behind`` with ``Retry-After``.
    """
    if not min_position:
        return
    runtime = request.app.state.runtime
    if runtime.store is not None:
        await _within_the_store(runtime.store, min_position)
    if not await runtime.wait_for_position(min_position, READ_WAIT_SECONDS):
        raise ApiError(
            503,
            "read_model_behind",
            f"read models have not reached position {min_position} yet; retry",
            headers={"Retry-After": "1"},
        )


async def _within_the_store(store: EventStore, min_position: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HEAD_GRACE_SECONDS
    while (head := await store.head_position()) < min_position:
        if loop.time() >= deadline:
            raise ApiError(
                422,
                "invalid_input",
                f"min_position: beyond the last event of the store ({head})",
                field="min_position",
            )
        await asyncio.sleep(0.05)


CaughtUp = Annotated[None, Depends(caught_up)]


def client_address(request: Request) -> str | None:
    """The caller's IP; X-Forwarded-For only when the peer is a trusted proxy."""
    peer = request.client.host if request.client else None
    trusted = request.app.state.runtime.trusted_proxies
    forwarded = request.headers.get("x-forwarded-for")
    if peer and forwarded and trusted:
        try:
            from_proxy = any(ipaddress.ip_address(peer) in net for net in trusted)
        except ValueError:
            from_proxy = False
        if from_proxy:
            return forwarded.split(",")[-1].strip()
    return peer


class StrictBody(BaseModel):
    """A request body that refuses fields it does not know (422 naming the field)."""

    model_config = ConfigDict(extra="forbid")


# Optimistic concurrency on a command: the client says which version it saw.
ExpectedVersion = Annotated[
    int | None,
    Query(ge=0, description="409 version_conflict unless the aggregate is at this version"),
]


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
# hop per request for reading an attribute.
async def read_models(request: Request) -> ReadModelDB:
    """The service's read-model database, for routes that read it straight."""
    db: ReadModelDB = request.app.state.runtime.db
    return db


ReadDB = Annotated[ReadModelDB, Depends(read_models)]


def composed(request: Request) -> Any:
    """What the service's composition root built (``ServiceRuntime.composed``).

    Each service's ``api/deps.py`` narrows it to its own typed holder.
    """
    return request.app.state.runtime.composed


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require(
    right: str | None = None, *, scope: str | None = None
) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency: the authorised caller, or 401/403 in the format of API.md.

    ``right`` is a catalogue name (``clients.create``); None lets any
    authenticated principal through (``GET /me``, say). ``scope``: a limited
    session of this scope passes too (identity's second-factor setup routes);
    elsewhere a limited session is 403 ``second_factor_required``.
    """

    async def authorised(request: Request) -> Principal:
        runtime = request.app.state.runtime
        try:
            principal: Principal = runtime.authorizer.authorize(
                bearer_token(request), client_address(request), right, scope
            )
        except Denied as denied:
            headers = {"WWW-Authenticate": "Bearer"} if denied.status == 401 else None
            raise ApiError(denied.status, denied.code, denied.message, headers=headers) from None
        structlog.contextvars.bind_contextvars(principal_id=principal.id)
        return principal

    return authorised
