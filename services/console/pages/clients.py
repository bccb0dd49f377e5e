"""Clients: the list with its filters, the card, and "log in as this client" with a way back.

Rules it keeps:

* The list and the card are the clients API's, with the staff member's token
  (``clients.view``); filters go through by the API's names.
* Impersonation asks the clients service for a client token
  (``clients.impersonate``, checked there); the staff member's own token is
  kept aside in the session, the portal shows a banner with a way back, and
  returning ends the impersonation at identity and restores the staff session
  on the client's card. A staff member already impersonating cannot start a
  second one (the service refuses a client token).
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import Response

from services.console.upstream import ApiProblem, SignInAgain
from services.console.web import Current, Visit, body_from

router = APIRouter()

PAGE = 25
CHARACTERISTICS = ("normal", "good", "conflict")
FILTERS = ("name", "country", "customer_status", "services", "project_id", "group_id", "product")


@router.get("/clients")
async def client_list(visit: Current, offset: int = 0) -> Response:
    me = await visit.signed_in("staff")
    filters = {k: visit.request.query_params.get(k) or None for k in FILTERS}
    answer = await visit.call(
        "GET",
        "clients",
        "/clients",
        params={**{k: v for k, v in filters.items() if v}, "limit": PAGE, "offset": max(offset, 0)},
    )
    kept = {k: v for k, v in filters.items() if v}
    return visit.render(
        "clients.html",
        me=me,
        clients=answer.body,
        total=answer.total or 0,
        offset=max(offset, 0),
        limit=PAGE,
        filters=filters,
        query_without_offset=urlencode(kept) + "&" if kept else "",
    )


async def _card_page(visit: Visit, client_id: str, after: int | None, **extra: Any) -> Response:
    me = await visit.signed_in("staff")
    client: dict[str, Any] = await visit.get("clients", f"/clients/{client_id}", min_position=after)
    tickets: list[dict[str, Any]] = []
    if visit.can("tickets.view"):
        tickets = await visit.get("tickets", "/tickets", client_id=client_id, sort="-updated")
    messages = await visit.get("clients", f"/clients/{client_id}/messages", min_position=after)
    status = extra.pop("status", 200)
    return visit.render(
        "client.html", status, me=me, client=client, tickets=tickets, messages=messages,
        characteristics=CHARACTERISTICS, values=extra.pop("values", {}), **extra,
    )  # fmt: skip


@router.get("/clients/{client_id}")
async def client_card(visit: Current, client_id: str, after: int | None = None) -> Response:
    return await _card_page(visit, client_id, after)


@router.post("/clients/{client_id}/impersonate")
async def log_in_as(visit: Current, client_id: str) -> Response:
    await visit.signed_in("staff")
    await visit.form()
    answer = await visit.call("POST", "clients", f"/clients/{client_id}/impersonate")
    session = visit.session
    staff_token = session.token
    assert staff_token is not None
    session.sign_in(answer.body["access_token"], "client", client_id)
    session.back_token, session.back_to = staff_token, f"/clients/{client_id}"
    return visit.redirect("/my/requests")


@router.post("/impersonation/end")
async def return_to_own_session(visit: Current) -> Response:
    await visit.form()
    session = visit.session
    if not session.impersonating:
        return visit.redirect("/")
    # The impersonation may have ended already: going back is all that is left then.
    with contextlib.suppress(ApiProblem, SignInAgain):
        await visit.call("POST", "identity", "/auth/logout")
    back_to = session.back_to or "/clients"
    assert session.back_token is not None
    session.sign_in(session.back_token, "staff", "")
    session.back_token = session.back_to = None
    me = await visit.signed_in("staff")
    session.principal_id = me["id"]
    return visit.redirect(back_to)


# Last: the generic action route must not shadow /impersonate above.
CARD_FIELDS = ("email", "phone", "contact_person", "company_name", "country", "characteristic")


@router.post("/clients/{client_id}/{action}")
async def act_on_client(visit: Current, client_id: str, action: str) -> Response:
    """``edit`` (the card, on the version shown), ``note``, ``suspend``/``resume`` services,
    ``message`` (a message or, with a deadline, an abuse notice)."""
    await visit.signed_in("staff")
    form = await visit.form()
    method, path, params = "POST", f"/clients/{client_id}", None
    body: dict[str, Any] | None = None
    if action == "edit":
        method, body = "PATCH", body_from(form, CARD_FIELDS)
        seen = str(form.get("expected_version") or "")
        params = {"expected_version": seen} if seen.isdigit() else None
    elif action == "note":
        method, body = "PATCH", {"note": str(form.get("note") or "")}
    elif action in ("suspend", "resume"):
        path += f"/services/{action}"
    elif action == "message":
        path = "/clients/messages"
        body = body_from(
            form,
            ("subject", "text", "violation.deadline", "violation.on_no_reaction",
             "violation.penalty_points", "violation.comment"),
            booleans=("forbid_replies",),
        )  # fmt: skip
        body["client_ids"] = [client_id]
        violation = body.get("violation", {})
        if "deadline" not in violation:
            body.pop("violation", None)
        else:
            if len(violation["deadline"]) == 16:  # datetime-local: UTC
                violation["deadline"] += ":00Z"
            points = str(violation.get("penalty_points", "0"))
            violation["penalty_points"] = int(points) if points.isdigit() else points
    else:
        raise ApiProblem(404, "not_found", f"no action {action}")
    try:
        answer = await visit.call(method, "clients", path, json=body, params=params)
    except ApiProblem as problem:
        if problem.status == 404:
            raise
        return await _card_page(
            visit, client_id, None, status=problem.status, problem=problem, values=body or {}
        )
    return visit.redirect(
        f"/clients/{client_id}?after={answer.body['position']}", flash=visit.t("saved")
    )
