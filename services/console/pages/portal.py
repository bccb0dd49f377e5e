"""The client portal: announcements, a new request, my requests (read, reply, rate, close).

Rules it keeps:

* Every page is the client's own view through the tickets API with the
  client's token (a company's client manager gets the company's requests
  there too); a staff member logged in as the client sees exactly that.
* Active announcements show as a banner on every portal page; while a
  blocking one is active the new-request page says why instead of a form, and
  a request refused with 409 ``blocked_by_announcement`` says the same.
* Each department offered shows its description and its expected response
  time as the tickets service computes it; categories show their warnings;
  the paid-request balance is shown when a department or category charges.
* After a command the next read passes ``min_position`` (read-your-writes).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from services.console.upstream import ApiProblem
from services.console.web import Current, Visit, body_from

router = APIRouter()


async def _portal(visit: Visit) -> dict[str, Any]:
    me = await visit.signed_in("client")
    announcements = await visit.get("tickets", "/announcements")
    return {"me": me, "announcements": announcements}


@router.get("/my/requests")
async def my_requests(visit: Current, offset: int = 0) -> Response:
    page = await _portal(visit)
    answer = await visit.call(
        "GET", "tickets", "/tickets", params={"limit": 25, "offset": max(offset, 0)}
    )
    subjects: dict[str, str] = {}
    if any(t.get("message_ref") for t in answer.body):  # threads opened by a message to me
        sent = await visit.get("clients", f"/clients/{page['me']['id']}/messages", limit=500)
        subjects = {m["message_id"]: m.get("subject") or "" for m in sent}
    return visit.render(
        "my_requests.html", tickets=answer.body, total=answer.total or 0, offset=offset,
        subjects=subjects, **page,
    )  # fmt: skip


async def _new_request_page(visit: Visit, **extra: Any) -> Response:
    page = await _portal(visit)
    me = page["me"]
    blocking = [a for a in page["announcements"] if a.get("blocking")]
    offered = await visit.get("tickets", "/support/departments")
    categories = await visit.get("tickets", "/categories")
    charging = any(d.get("charge_requests") for d in offered) or any(
        c.get("paid") for c in categories
    )
    balance = None
    if charging:
        balance = (await visit.get("tickets", f"/clients/{me['id']}/paid-requests"))["balance"]
    status = extra.pop("status", 200)
    return visit.render(
        "new_request.html",
        status,
        departments=offered,
        categories=categories,
        blocking=blocking,
        balance=balance,
        values=extra.pop("values", {}),
        **extra,
        **page,
    )


@router.get("/my/requests/new")
async def new_request_form(visit: Current) -> Response:
    return await _new_request_page(visit)


@router.post("/my/requests/new")
async def open_request(visit: Current) -> Response:
    await visit.signed_in("client")
    form = await visit.form()
    body = body_from(form, ("department_id", "category_id", "subject", "body"))
    try:
        answer = await visit.call("POST", "tickets", "/tickets", json=body)
    except ApiProblem as problem:
        return await _new_request_page(visit, status=problem.status, problem=problem, values=body)
    created = answer.body
    return visit.redirect(f"/my/requests/{created['id']}?after={created['position']}")


async def _request_page(visit: Visit, ticket_id: str, after: int | None, **extra: Any) -> Response:
    page = await _portal(visit)
    ticket = await visit.get("tickets", f"/tickets/{ticket_id}", min_position=after)
    status = extra.pop("status", 200)
    message = await visit.message_of(ticket)
    return visit.render("my_request.html", status, ticket=ticket, message=message, **extra, **page)


@router.get("/my/requests/{ticket_id}")
async def my_request(visit: Current, ticket_id: str, after: int | None = None) -> Response:
    return await _request_page(visit, ticket_id, after)


@router.post("/my/requests/{ticket_id}/{action}")
async def act_on_request(visit: Current, ticket_id: str, action: str) -> Response:
    """``reply`` (``body``), ``rate`` (``score``, ``message_id``?), ``close``."""
    await visit.signed_in("client")
    form = await visit.form()
    if action == "reply":
        path, body = "messages", body_from(form, ("body",))
    elif action == "rate":
        path, body = "rate", body_from(form, ("message_id", "comment"))
        score = str(form.get("score") or "")
        body["score"] = int(score) if score.isdigit() else score
    elif action == "close":
        path, body = "close", {}
    else:
        raise ApiProblem(404, "not_found", f"no action {action}")
    try:
        answer = await visit.call("POST", "tickets", f"/tickets/{ticket_id}/{path}", json=body)
    except ApiProblem as problem:
        if problem.status in (404, 403):
            raise
        return await _request_page(
            visit, ticket_id, None, status=problem.status, problem=problem, values=body
        )
    return visit.redirect(f"/my/requests/{ticket_id}?after={answer.body['position']}")
