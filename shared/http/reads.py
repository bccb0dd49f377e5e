"""Reading read models over HTTP: one row or a 404, a page of rows with its total.

Rules it keeps:

* A missing (or hidden) object is a 404 ``not_found`` naming what was asked for
  (``department d-1 not found``), the same words in every service.
* A list answers a bare JSON array (API.md); the number of all that match the
  filters travels in ``X-Total-Count``, counted over the filtered query in the
  same connection as the page, so a client can page without a second call.
* Pages are ``limit`` (1–500) and ``offset`` (≥ 0) query parameters; each route
  picks its default ``limit``. Orders must end in a unique column so that pages
  never repeat or skip a row.
* ``counted`` is the same page and count for the one answer that carries its
  total in its body (identity's ``GET /staff``: ``{items, total, limit,
  offset}``, kept as published).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Response
from sqlalchemy import Row, Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.http.api import ApiError

Limit = Annotated[int, Query(ge=1, le=500, description="at most this many (a page)")]
Offset = Annotated[int, Query(ge=0, description="skip this many (the page's start)")]


def not_found(what: str) -> ApiError:
    """404 ``not_found`` for ``what`` (``"ticket t-1"``)."""
    return ApiError(404, "not_found", f"{what} not found")


async def one_or_404(conn: AsyncConnection, query: Select[Any], what: str) -> Row[Any]:
    """The first row ``query`` finds, or 404 naming ``what``."""
    row: Row[Any] | None = (await conn.execute(query)).first()
    if row is None:
        raise not_found(what)
    return row


async def page(
    conn: AsyncConnection,
    query: Select[Any],
    response: Response,
    *,
    order_by: tuple[Any, ...],
    limit: int,
    offset: int,
) -> list[Row[Any]]:
    """One page of ``query`` in ``order_by``; all that match counted into ``X-Total-Count``."""
    rows, total = await counted(conn, query, order_by=order_by, limit=limit, offset=offset)
    set_total(response, total)
    return rows


async def counted(
    conn: AsyncConnection,
    query: Select[Any],
    *,
    order_by: tuple[Any, ...],
    limit: int,
    offset: int,
) -> tuple[list[Row[Any]], int]:
    """One page of ``query`` in ``order_by``, and how many match in all (same connection)."""
    total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar()
    rows = list(await conn.execute(query.order_by(*order_by).limit(limit).offset(offset)))
    return rows, int(total or 0)


def set_total(response: Response, total: int | None) -> None:
    response.headers["X-Total-Count"] = str(int(total or 0))
