"""Companies: the list, and a company's members (and its client manager), contacts and
equipment tree.

Rules it keeps: reading needs ``clients.view``, changing ``clients.companies``
(both checked by the clients service); a member is added by client id, a contact
without e-mail needs a messenger and its id (the service says so, next to the
form); equipment nests by ``parent_id`` and is shown as the tree the API returns.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from services.console.upstream import ApiProblem
from services.console.web import Current, Visit, body_from

router = APIRouter()


@router.get("/companies")
async def companies(visit: Current, name: str | None = None) -> Response:
    me = await visit.signed_in("staff")
    listed = await visit.get("clients", "/companies", name=name, limit=200)
    return visit.render("companies.html", me=me, companies=listed, name=name or "")


@router.post("/companies")
async def create_company(visit: Current) -> Response:
    await visit.signed_in("staff")
    form = await visit.form()
    answer = await visit.call("POST", "clients", "/companies", json=body_from(form, ("name",)))
    created = answer.body
    return visit.redirect(f"/companies/{created['id']}?after={created['position']}")


async def _company_page(visit: Visit, company_id: str, after: int | None, **extra: Any) -> Response:
    me = await visit.signed_in("staff")
    company = await visit.get("clients", f"/companies/{company_id}", min_position=after)
    status = extra.pop("status", 200)
    return visit.render("company.html", status, me=me, company=company, **extra)


@router.get("/companies/{company_id}")
async def company(visit: Current, company_id: str, after: int | None = None) -> Response:
    return await _company_page(visit, company_id, after)


@router.post("/companies/{company_id}/{part}")
async def add_to_company(visit: Current, company_id: str, part: str) -> Response:
    """``members`` (``client_id``, ``manager``), ``contacts``, ``equipment``."""
    await visit.signed_in("staff")
    form = await visit.form()
    if part == "members":
        body = body_from(form, ("client_id",), booleans=("manager",))
    elif part == "contacts":
        body = body_from(form, ("name", "email", "phone", "messenger", "messenger_id"))
    elif part == "equipment":
        body = body_from(form, ("name", "type", "serial", "parent_id"))
    else:
        raise ApiProblem(404, "not_found", f"no part {part}")
    try:
        answer = await visit.call("POST", "clients", f"/companies/{company_id}/{part}", json=body)
    except ApiProblem as problem:
        if problem.status == 404 and problem.field is None:
            raise
        return await _company_page(visit, company_id, None, status=problem.status, problem=problem)
    return visit.redirect(f"/companies/{company_id}?after={answer.body['position']}")
