"""Reports with charts, the notifier's deliveries and timers, one's own subscriptions.

Rules it keeps:

* Reports need ``reports.tickets``, deliveries ``notifier.deliveries``, timers
  ``notifier.timers`` (checked by the services); one's own subscriptions need
  no right (the notifier lets anyone manage their own, and only theirs here).
* Charts are drawn by the server as plain HTML bars (no script, no library),
  each with its number written next to it, so they read without colour or CSS.
* Filters go through by the APIs' names (``from``/``to`` months, ``department_id``;
  ``to``, ``channel``, ``status``).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import Response

from services.console.i18n import pick
from services.console.upstream import ApiProblem
from services.console.web import Current

router = APIRouter()

NOTICES = ("new_ticket", "client_reply", "ticket_transferred", "deadline_near")
CHANNELS = ("email", "sms")
PAGE = 50


@router.get("/reports")
async def reports(visit: Current) -> Response:
    me = await visit.signed_in("staff")
    query = visit.request.query_params
    params = {k: query.get(k) for k in ("from", "to", "department_id") if query.get(k)}
    times, answered, ratings = await asyncio.gather(
        visit.get("tickets", "/reports/response-times", **params),
        visit.get("tickets", "/reports/answered", **params),
        visit.get("tickets", "/reports/ratings", **params),
    )
    offered = await visit.get("tickets", "/support/departments")
    names = {d["id"]: pick(d["name"], visit.lang) for d in offered}
    busiest = max([m["tickets"] for m in answered["months"]] or [1]) or 1
    most = max([*ratings["total"]["all"]["scores"].values(), 1])
    return visit.render(
        "reports.html", me=me, times=times, answered=answered, ratings=ratings, names=names,
        busiest=busiest, most=most, filters=params,
    )  # fmt: skip


@router.get("/deliveries")
async def deliveries(visit: Current, offset: int = 0) -> Response:
    me = await visit.signed_in("staff")
    query = visit.request.query_params
    filters = {k: query.get(k) for k in ("to", "channel", "status") if query.get(k)}
    answer = await visit.call(
        "GET", "notifier", "/deliveries",
        params={**filters, "limit": PAGE, "offset": max(offset, 0)},
    )  # fmt: skip
    return visit.render(
        "deliveries.html", me=me, deliveries=answer.body, total=answer.total or 0,
        offset=max(offset, 0), limit=PAGE, filters=filters,
        query_without_offset=urlencode(filters) + "&" if filters else "",
    )  # fmt: skip


@router.get("/timers")
async def timers(visit: Current, status: str | None = None) -> Response:
    me = await visit.signed_in("staff")
    listed = await visit.get("notifier", "/timers", status=status, limit=200)
    return visit.render("timers.html", me=me, timers=listed, chosen=status)


@router.get("/subscriptions")
async def my_subscriptions(visit: Current) -> Response:
    me = await visit.signed_in("staff")
    mine = await visit.get("notifier", f"/subscriptions/{me['id']}")
    return visit.render(
        "subscriptions.html", me=me, subscription=mine, notices=NOTICES, channels=CHANNELS
    )


@router.post("/subscriptions")
async def change_my_subscriptions(visit: Current) -> Response:
    me = await visit.signed_in("staff")
    form = await visit.form()
    body: dict[str, Any] = {
        "language": str(form.get("language") or visit.lang),
        "notices": {
            notice: [c for c in CHANNELS if c in form.getlist(f"notices.{notice}")]
            for notice in NOTICES
        },
    }
    try:
        await visit.call("PUT", "notifier", f"/subscriptions/{me['id']}", json=body)
    except ApiProblem as problem:
        if problem.status != 422:
            raise
        return visit.render(
            "subscriptions.html", 422, me=me, subscription=body, notices=NOTICES,
            channels=CHANNELS, problem=problem,
        )  # fmt: skip
    return visit.redirect("/subscriptions", flash=visit.t("saved"))
