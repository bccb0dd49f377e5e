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
from services.console.web import Current

router = APIRouter()

PAGE = 25
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


@router.get("/clients/{client_id}")
async def client_card(visit: Current, client_id: str) -> Response:
    me = await visit.signed_in("staff")
    client: dict[str, Any] = await visit.get("clients", f"/clients/{client_id}")
    tickets: list[dict[str, Any]] = []
    if visit.can("tickets.view"):
        tickets = await visit.get("tickets", "/tickets", client_id=client_id, sort="-updated")
    return visit.render("client.html", me=me, client=client, tickets=tickets)


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
