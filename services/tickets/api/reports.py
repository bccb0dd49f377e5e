"""HTTP adapter of the support reports: ``GET /reports/...`` (API.md, tickets).

Read from the ``ticket_reports`` read model (``services.tickets.projections.reports``,
where what counts is defined); staff with the right ``reports.tickets`` see
every department. Each accepts ``?min_position=`` and the filters
``department_id`` (``none``: the messages queue), ``staff_id``, and ``from`` /
``to`` (months ``YYYY-MM``, UTC, inclusive). Times are wall-clock seconds:
business hours are not applied.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.tickets.projections.reports import (
    NO_DEPARTMENT,
    AnsweredReport,
    RatingsReport,
    ReportFilter,
    ResponseTimesReport,
    read_answered,
    read_ratings,
    read_response_times,
)
from shared.access.control import Principal
from shared.http.api import CaughtUp, ReadDB, invalid, require

router = APIRouter()

RIGHT = "reports.tickets"
MAX_ID = 64
MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"


Reporter = Annotated[Principal, Depends(require(RIGHT))]


def report_filter(
    department_id: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_ID, description='"none": the messages queue'),
    ] = None,
    staff_id: Annotated[str | None, Query(min_length=1, max_length=MAX_ID)] = None,
    month_from: Annotated[
        str | None,
        Query(alias="from", pattern=MONTH, description="first month, YYYY-MM (UTC)"),
    ] = None,
    month_to: Annotated[
        str | None,
        Query(alias="to", pattern=MONTH, description="last month, YYYY-MM (UTC), inclusive"),
    ] = None,
) -> ReportFilter:
    """The filters every report takes."""
    if month_from is not None and month_to is not None and month_from > month_to:
        raise invalid("from", "after 'to'")
    return ReportFilter(
        month_from=month_from,
        month_to=month_to,
        department_id=NO_DEPARTMENT if department_id == "none" else department_id,
        staff_id=staff_id,
    )


Filter = Annotated[ReportFilter, Depends(report_filter)]


@router.get("/reports/response-times", tags=["reports"])
async def response_times(db: ReadDB, _: CaughtUp, __: Reporter, f: Filter) -> ResponseTimesReport:
    """First-response time (ticket opened → first staff reply the client sees) and
    response time (each client message → the next staff reply), in wall-clock
    seconds, in total, per department and per staff member who replied."""
    async with db.engine.connect() as conn:
        return await read_response_times(conn, f)


@router.get("/reports/answered", tags=["reports"])
async def answered(db: ReadDB, _: CaughtUp, __: Reporter, f: Filter) -> AnsweredReport:
    """Tickets answered (distinct tickets with a staff reply the client sees) and those
    replies, month by month: in total, per department and per staff member."""
    async with db.engine.connect() as conn:
        return await read_answered(conn, f)


@router.get("/reports/ratings", tags=["reports"])
async def ratings(db: ReadDB, _: CaughtUp, __: Reporter, f: Filter) -> RatingsReport:
    """Ratings (count, average, count per score) of replies (credited to their author)
    and of whole tickets (to the department and the last staff replier)."""
    async with db.engine.connect() as conn:
        return await read_ratings(conn, f)
