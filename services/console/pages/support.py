"""Staff's support center: the queue (filters, sort, paging, count, live) and a ticket.

Rules it keeps:

* The queue is ``GET /tickets`` with the staff member's token: the tickets
  service decides what they may see; the console passes the filters
  (``status``, ``department_id``, ``assignee_id``), ``sort`` and paging along and
  shows ``X-Total-Count``.
* Live updates: the page's small script listens to ``/queue/live``, which
  relays the tickets service's ``GET /tickets/live`` for this user (the token
  stays in the console) and sends each changed ticket as a rendered table row;
  the stream ends when the service ends it (token expired, right revoked).
* A reply, note, assignment, transfer, closing or reopening names the version
  the page showed (``expected_version``); a 409 ``ticket_changed`` shows the
  page again with "someone answered meanwhile", what changed, and the text
  that was not sent.
* Template autofill is the service's ``/tickets/{id}/autofill`` (macros filled
  there); without JavaScript the "fill" button reloads the page with it.
* A page's calls that do not depend on each other go at once (``asyncio.gather``
  over the one pooled client): the queue in one round, a ticket in two (the
  user, the ticket and the names; then what the rights and the ticket decide).
  The user and the support departments' names are what the console asked for
  a few seconds ago at most (``services.console.recent``), and the counts per
  status come with the page (``GET /tickets?counts=true``), so a queue page is
  usually one call and a ticket page one.
* What is made from the departments' answer, their names in a language and the
  queue filter's options (with the chosen one marked), is made once per answer
  and language (``_Named``): while ``recent`` keeps the same answer, a page
  reuses them. Only a known department (or none) is a key of the options, so
  what a browser sends cannot grow them.
* "Who could see this at …" is ``GET /tickets/{id}/viewers?at=`` (the form's
  ``at``, a ``datetime-local`` without a zone, read as UTC by the service).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from markupsafe import Markup

from services.console.i18n import pick
from services.console.upstream import ApiProblem
from services.console.web import Current, Visit, body_from

router = APIRouter()

PAGE = 25
SORTS = ("waiting", "deadline", "-updated", "-opened")
STATUSES = ("open", "answered", "closed")


async def _staff(visit: Visit) -> dict[str, Any]:
    me = await visit.signed_in("staff")
    return {"me": me}


@dataclass
class _Named:
    """The support departments' names in one language, made from one answer."""

    answer: Any  # the answer they were made from: another one makes them again
    names: dict[str, str]  # id -> name, shared by the pages: never changed
    options: dict[str | None, Markup] = field(default_factory=dict)  # by the chosen id

    def options_for(self, chosen: str | None) -> Markup:
        """The queue filter's ``<option>`` list, ``chosen`` selected (rendered once per
        choice, not per page)."""
        key = chosen if chosen in self.names else None
        found = self.options.get(key)
        if found is None:
            option = Markup('<option value="{}"{}>{}</option>')
            found = Markup("").join(
                option.format(id, Markup(" selected") if id == key else "", name)
                for id, name in self.names.items()
            )
            self.options[key] = found
        return found


# Per language (a fixed few): what the latest answer gave.
_named: dict[str, _Named] = {}


async def _named_departments(visit: Visit) -> _Named:
    """The support departments' names (for labels and the filter and transfer lists):
    the list every staff member sees, asked for once every few seconds, not per page."""
    token = visit.session.token
    if token is None or visit.session.kind != "staff":
        offered = await visit.get("tickets", "/support/departments")
    else:
        offered = await visit.api.support_departments(token, visit.address)
    lang = visit.lang
    found = _named.get(lang)
    if found is None or found.answer is not offered:
        found = _Named(offered, {d["id"]: pick(d["name"], lang) for d in offered})
        _named[lang] = found
    return found


async def _department_names(visit: Visit) -> dict[str, str]:
    return (await _named_departments(visit)).names


@router.get("/queue")
async def queue(
    visit: Current,
    status: str | None = None,
    department_id: str | None = None,
    assignee_id: str | None = None,
    sort: str = "waiting",
    offset: int = 0,
) -> Response:
    # The page's calls at once (one pooled client): the user is needed first only
    # to read "me" as an assignee.
    mine = assignee_id == "me"
    me = (await _staff(visit))["me"] if mine else None
    chosen = {
        "status": status or None,
        "department_id": department_id or None,
        "assignee_id": (me["id"] if me is not None else assignee_id) or None,
        "sort": sort if sort in SORTS else "waiting",
    }
    params = {
        **{k: v for k, v in chosen.items() if v},
        "limit": PAGE,
        "offset": max(offset, 0),
        "counts": "true",  # the counts per status in the same call (X-Status-Counts)
    }
    answer, named, page = await asyncio.gather(
        visit.call("GET", "tickets", "/tickets", params=params),
        _named_departments(visit),
        _staff(visit),
    )
    filters = {"status": status, "department_id": department_id, "assignee_id": assignee_id}
    kept = {k: v for k, v in {**filters, "sort": sort}.items() if v}
    return visit.render(
        "queue.html",
        tickets=answer.body,
        total=answer.total or 0,
        offset=max(offset, 0),
        limit=PAGE,
        filters=filters,
        sort=chosen["sort"],
        sorts=SORTS,
        names=named.names,
        department_options=named.options_for(department_id or None),
        query_without_offset=urlencode(kept) + "&" if kept else "",
        counts=_counts(answer.headers.get("x-status-counts", "")),
        by_status={
            s: urlencode({**{k: v for k, v in kept.items() if k != "status"}, "status": s})
            for s in STATUSES
        },
        **page,
    )


def _counts(header: str) -> dict[str, int]:
    """Tickets per status under the other filters, from the page's ``X-Status-Counts``
    (``open=12, answered=3, closed=40``)."""
    found = dict(part.strip().partition("=")[::2] for part in header.split(",") if "=" in part)
    return {s: int(found.get(s) or 0) for s in STATUSES}


@router.get("/queue/live")
async def queue_live(request: Request, visit: Current) -> Response:
    """Server-sent events for the queue page: ``ticket`` events carry a rendered row."""
    await _staff(visit)
    names = await _department_names(visit)
    rows = visit.env.get_template("queue_rows.html")
    upstream = visit.api
    token, address = visit.session.token, visit.address

    def frame(event: str, data: Any) -> bytes:
        return f"event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"

    async def relay() -> AsyncIterator[bytes]:
        lines = upstream.lines("tickets", "/tickets/live", token=token, address=address)
        try:
            # Closed on leaving (the end, the browser gone): the upstream stream with it.
            async with contextlib.aclosing(lines):
                event = ""
                async for line in lines:
                    if await request.is_disconnected():
                        return
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "ticket":
                        ticket = orjson.loads(line[5:])
                        html = rows.render(
                            tickets=[ticket],
                            names=names,
                            t=visit.t,
                            lang=visit.lang,
                        )
                        yield frame("ticket", {"id": ticket["id"], "html": html})
                    elif line.startswith("data:") and event == "end":
                        yield frame("end", orjson.loads(line[5:]))
                        return
                    elif line.startswith(":"):
                        yield b": keep-alive\n\n"
        except ApiProblem as problem:
            # The service's refusal (its status: 401, 403…) or 503 when it does not answer.
            yield frame("end", {"status": problem.status})

    return StreamingResponse(
        relay(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


async def _ticket_page(visit: Visit, ticket_id: str, after: int | None, **extra: Any) -> Response:
    # Two rounds of concurrent calls: the user, the ticket and the department names;
    # then what depends on the user's rights and on the ticket.
    page, ticket, names = await asyncio.gather(
        _staff(visit),
        visit.get("tickets", f"/tickets/{ticket_id}", min_position=after),
        _department_names(visit),
    )
    templates_wanted = visit.can("tickets.reply") or visit.can("tickets.templates")
    templates, authors, message, assignees = await asyncio.gather(
        visit.get("tickets", "/templates") if templates_wanted else _none([]),
        _staff_names(visit, ticket),
        visit.message_of(ticket) if visit.can("clients.view") else _none(None),
        _assignees(visit, ticket),
    )
    status = extra.pop("status", 200)
    return visit.render(
        "ticket.html",
        status,
        ticket=ticket,
        templates=templates,
        names=names,
        authors=authors,
        message=message,
        assignees=assignees,
        values=extra.pop("values", {}),
        **extra,
        **page,
    )


async def _none(value: Any) -> Any:
    """What a call the user may not make would answer, as a call (for ``gather``)."""
    return value


async def _staff_names(visit: Visit, ticket: dict[str, Any]) -> dict[str, str]:
    """Staff authors by login (the caller as "you"; ids stay for those who may not list staff)."""
    me = visit.me or {}
    authors = {e["author_id"] for e in ticket["entries"] if e.get("author_kind") == "staff"}
    names = {me.get("id", ""): visit.t("you")}
    if visit.can("staff.view"):
        others = sorted(a for a in authors if a and a not in names)
        cards = await asyncio.gather(
            *(visit.call("GET", "identity", f"/staff/{a}") for a in others),
            return_exceptions=True,
        )
        for author, card in zip(others, cards, strict=True):
            if not isinstance(card, BaseException):
                names[author] = card.body.get("login", author)
    return names


async def _assignees(visit: Visit, ticket: dict[str, Any]) -> list[dict[str, Any]]:
    """Members of the ticket's department to assign it to (for those who may list staff)."""
    if not (visit.can("tickets.assign") and visit.can("staff.view") and ticket["department_id"]):
        return []
    found = await visit.get(
        "identity", "/staff", department_id=ticket["department_id"], disabled="false", limit=200
    )
    return list(found["items"])


@router.get("/tickets/{ticket_id}")
async def ticket(
    visit: Current, ticket_id: str, after: int | None = None, template_id: str | None = None
) -> Response:
    values: dict[str, Any] = {}
    if template_id:  # the no-script way to fill a template in
        values = await visit.get(
            "tickets", f"/tickets/{ticket_id}/autofill", template_id=template_id
        )
    return await _ticket_page(visit, ticket_id, after, values=values)


@router.get("/tickets/{ticket_id}/viewers")
async def viewers(visit: Current, ticket_id: str, at: str = "") -> Response:
    """ "Who could see this at …": ``GET /tickets/{id}/viewers?at=`` (the form's ``at`` is a
    browser's ``datetime-local``, without a zone: the service reads it as UTC)."""
    page = await _staff(visit)
    ticket, found = await asyncio.gather(
        visit.get("tickets", f"/tickets/{ticket_id}"),
        visit.get("tickets", f"/tickets/{ticket_id}/viewers", at=at.strip() or None),
    )
    return visit.render(
        "viewers.html",
        ticket=ticket,
        found=found,
        at=at,
        names=await _department_names(visit),
        **page,
    )


@router.get("/tickets/{ticket_id}/autofill")
async def autofill(visit: Current, ticket_id: str, template_id: str) -> Response:
    await _staff(visit)
    try:
        filled = await visit.get(
            "tickets", f"/tickets/{ticket_id}/autofill", template_id=template_id
        )
    except ApiProblem as problem:
        return JSONResponse({"error": {"code": problem.code}}, status_code=problem.status)
    return JSONResponse(filled)


ACTIONS = ("reply", "assign", "transfer", "close", "reopen")


@router.post("/tickets/{ticket_id}/{action}")
async def act_on_ticket(visit: Current, ticket_id: str, action: str) -> Response:
    """``reply`` (``body``, ``internal``), ``assign`` (``staff_id``), ``transfer``
    (``department_id``, ``staff_id``), ``close``, ``reopen``; each with ``expected_version``."""
    if action not in ACTIONS:
        raise ApiProblem(404, "not_found", f"no action {action}")
    page = await _staff(visit)
    form = await visit.form()
    seen = str(form.get("expected_version") or "")
    body: dict[str, Any]
    if action == "reply":
        path = "messages"
        body = body_from(form, ("body",), booleans=("internal",))
    elif action == "assign":
        path = "assign"
        chosen = str(form.get("staff_id") or "")
        body = {"staff_id": page["me"]["id"] if chosen == "me" else (chosen or None)}
    elif action == "transfer":
        path = "transfer"
        body = body_from(form, ("department_id", "staff_id"))
    else:
        path, body = action, {}
    if seen.isdigit():
        body["expected_version"] = int(seen)
    try:
        answer = await visit.call("POST", "tickets", f"/tickets/{ticket_id}/{path}", json=body)
    except ApiProblem as problem:
        if problem.status == 404:
            raise
        collision = problem.code == "ticket_changed"
        return await _ticket_page(
            visit,
            ticket_id,
            None,
            status=problem.status,
            problem=problem,
            collision=collision,
            changes=problem.extra.get("changes", []),
            values={"body": body.get("body", "")},
        )
    if action == "transfer":  # it may have left the queues this user sees
        return visit.redirect("/queue")
    return visit.redirect(f"/tickets/{ticket_id}?after={answer.body['position']}")


@router.get("/search")
async def search(visit: Current, q: str = "") -> Response:
    """Tickets by text (``GET /tickets/search``, what the user may see) and, for staff who
    may view clients, clients by name, e-mail or login (``GET /clients?name=``)."""
    me = await visit.signed_in()
    found: list[dict[str, Any]] = []
    clients: list[dict[str, Any]] = []
    problem = None
    if len(q.strip()) >= 2:
        try:
            found = await visit.get("tickets", "/tickets/search", q=q.strip())
            if me["kind"] == "staff" and visit.can("clients.view"):
                clients = await visit.get("clients", "/clients", name=q.strip(), limit=20)
        except ApiProblem as refused:
            if refused.status != 422:
                raise
            problem = refused
    return visit.render(
        "search.html", q=q, found=found, clients=clients, problem=problem, me=me,
        names=await _department_names(visit) if me["kind"] == "staff" else {},
    )  # fmt: skip
