"""Staff and departments, the rights editor, announcements and response templates.

Rules it keeps:

* Each page and form needs what its API needs (``departments.view``,
  ``departments.create``, ``departments.rights``, ``staff.view``,
  ``staff.create``, ``staff.rights``, ``tickets.announcements``,
  ``tickets.templates``); the console hides a form the user cannot use and the
  service refuses one they post anyway (shown as its message).
* The rights editor shows every effective right with its sources: a right a
  department gives is shown locked with the department's name (identity
  refuses to revoke it, 409 ``inherited_right``); an individual grant has a
  revoke button; full access is shown as such. Nobody can grant what they do
  not hold: identity decides, the console only offers the catalogue, without
  the functions that manage rights (``full_access_only`` in the catalogue:
  held by full-access staff only, never granted; a department's page shows
  them locked, "full access only").
* A department's rights are switched section by section or function by
  function (``POST /departments/{id}/rights`` ``{"right","enabled"}``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from services.console.i18n import pick
from services.console.upstream import ApiProblem
from services.console.web import Current, Visit, body_from

router = APIRouter()


async def _staff_page(visit: Visit) -> dict[str, Any]:
    return {"me": await visit.signed_in("staff")}


# ---------------------------------------------------------------- departments


async def _departments_page(visit: Visit, **extra: Any) -> Response:
    page = await _staff_page(visit)
    departments = await visit.get("departments", "/departments")
    status = extra.pop("status", 200)
    return visit.render(
        "departments.html", status, departments=departments, values=extra.pop("values", {}),
        **extra, **page,
    )  # fmt: skip


@router.get("/departments")
async def departments(visit: Current) -> Response:
    return await _departments_page(visit)


@router.post("/departments")
async def create_department(visit: Current) -> Response:
    await _staff_page(visit)
    form = await visit.form()
    body = body_from(
        form, ("name.en", "name.ru", "support.description"), booleans=("support.enabled",)
    )
    try:
        answer = await visit.call("POST", "departments", "/departments", json=body)
    except ApiProblem as problem:
        return await _departments_page(visit, status=problem.status, problem=problem, values=body)
    created = answer.body
    return visit.redirect(f"/departments/{created['id']}?after={created['position']}")


@router.get("/departments/{department_id}")
async def department(visit: Current, department_id: str, after: int | None = None) -> Response:
    page = await _staff_page(visit)
    found = await visit.get("departments", f"/departments/{department_id}", min_position=after)
    catalogue = await visit.get("identity", "/rights/catalogue")
    return visit.render("department.html", department=found, catalogue=catalogue, **page)


@router.post("/departments/{department_id}/rights")
async def switch_department_right(visit: Current, department_id: str) -> Response:
    await _staff_page(visit)
    form = await visit.form()
    body = {"right": str(form.get("right") or ""), "enabled": form.get("enabled") == "true"}
    answer = await visit.call(
        "POST", "departments", f"/departments/{department_id}/rights", json=body
    )
    return visit.redirect(
        f"/departments/{department_id}?after={answer.body['position']}", flash=visit.t("saved")
    )


# ---------------------------------------------------------------- staff


async def _staff_list_page(visit: Visit, **extra: Any) -> Response:
    page = await _staff_page(visit)
    listed = await visit.get("identity", "/staff", limit=200)
    departments: list[dict[str, Any]] = []
    if visit.can("departments.view"):
        departments = await visit.get("departments", "/departments")
    status = extra.pop("status", 200)
    return visit.render(
        "staff_list.html", status, staff=listed["items"], total=listed["total"],
        departments=departments, values=extra.pop("values", {}), **extra, **page,
    )  # fmt: skip


@router.get("/staff")
async def staff_list(visit: Current) -> Response:
    return await _staff_list_page(visit)


@router.post("/staff")
async def add_staff(visit: Current) -> Response:
    await _staff_page(visit)
    form = await visit.form()
    body = body_from(
        form, ("login", "password", "full_name.en", "full_name.ru", "email", "phone"),
        booleans=("full_access",),
    )  # fmt: skip
    body["departments"] = [str(d) for d in form.getlist("departments") if d]
    try:
        answer = await visit.call("POST", "identity", "/staff", json=body)
    except ApiProblem as problem:
        body.pop("password", None)
        return await _staff_list_page(visit, status=problem.status, problem=problem, values=body)
    created = answer.body
    return visit.redirect(f"/staff/{created['id']}?after={created['position']}")


@router.get("/staff/{staff_id}")
async def staff_card(
    visit: Current, staff_id: str, after: int | None = None, problem: str | None = None
) -> Response:
    page = await _staff_page(visit)
    card = await visit.get("identity", f"/staff/{staff_id}", min_position=after)
    rights = await visit.get("identity", f"/staff/{staff_id}/rights", min_position=after)
    catalogue = await visit.get("identity", "/rights/catalogue")
    names: dict[str, str] = {}
    if visit.can("departments.view"):
        names = {
            d["id"]: pick(d["name"], visit.lang)
            for d in await visit.get("departments", "/departments")
        }
    return visit.render(
        "staff_card.html", card=card, rights=rights, catalogue=catalogue, names=names, **page
    )


@router.post("/staff/{staff_id}/rights")
async def change_staff_right(visit: Current, staff_id: str) -> Response:
    """``grant`` or ``revoke`` an individual right."""
    await _staff_page(visit)
    form = await visit.form()
    right = str(form.get("right") or "")
    if form.get("action") == "revoke":
        answer = await visit.call("DELETE", "identity", f"/staff/{staff_id}/rights/{right}")
    else:
        answer = await visit.call(
            "POST", "identity", f"/staff/{staff_id}/rights", json={"right": right}
        )
    return visit.redirect(
        f"/staff/{staff_id}?after={answer.body['position']}", flash=visit.t("saved")
    )


# ---------------------------------------------------------------- announcements


async def _announcements_page(visit: Visit, **extra: Any) -> Response:
    page = await _staff_page(visit)
    listed = await visit.get("tickets", "/announcements", min_position=extra.pop("after", None))
    status = extra.pop("status", 200)
    return visit.render(
        "announcements.html", status, listed=listed, values=extra.pop("values", {}),
        **extra, **page,
    )  # fmt: skip


@router.get("/announcements")
async def announcements(visit: Current, after: int | None = None) -> Response:
    return await _announcements_page(visit, after=after)


@router.post("/announcements")
async def publish_announcement(visit: Current) -> Response:
    await _staff_page(visit)
    form = await visit.form()
    body = body_from(form, ("text.en", "text.ru", "starts_at", "ends_at"), booleans=("blocking",))
    for moment in ("starts_at", "ends_at"):  # <input type=datetime-local> has no zone: UTC
        if moment in body and len(body[moment]) == 16:
            body[moment] += ":00Z"
    try:
        answer = await visit.call("POST", "tickets", "/announcements", json=body)
    except ApiProblem as problem:
        return await _announcements_page(visit, status=problem.status, problem=problem, values=body)
    return visit.redirect(f"/announcements?after={answer.body['position']}")


@router.post("/announcements/{announcement_id}/end")
async def end_announcement(visit: Current, announcement_id: str) -> Response:
    await _staff_page(visit)
    await visit.form()
    answer = await visit.call("DELETE", "tickets", f"/announcements/{announcement_id}")
    return visit.redirect(f"/announcements?after={answer.body['position']}")


# ---------------------------------------------------------------- templates


async def _templates_page(visit: Visit, **extra: Any) -> Response:
    page = await _staff_page(visit)
    listed = await visit.get("tickets", "/templates", min_position=extra.pop("after", None))
    status = extra.pop("status", 200)
    return visit.render(
        "templates.html", status, listed=listed, values=extra.pop("values", {}), **extra, **page
    )


@router.get("/templates")
async def templates(visit: Current, after: int | None = None) -> Response:
    return await _templates_page(visit, after=after)


@router.post("/templates")
async def create_template(visit: Current) -> Response:
    await _staff_page(visit)
    form = await visit.form()
    body = body_from(form, ("name", "subject", "body"))
    try:
        answer = await visit.call("POST", "tickets", "/templates", json=body)
    except ApiProblem as problem:
        return await _templates_page(visit, status=problem.status, problem=problem, values=body)
    return visit.redirect(f"/templates?after={answer.body['position']}")


# ---------------------------------------------------------------- schedules

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _hours(text: str) -> list[list[str]]:
    """``"09:00-13:00, 14:00-18:00"`` -> ``[["09:00", "13:00"], ["14:00", "18:00"]]``
    (anything else is passed on as written, for the service to name what is wrong)."""
    ranges = []
    for part in text.split(","):
        if part.strip():
            start, _, end = part.strip().partition("-")
            ranges.append([start.strip(), end.strip()])
    return ranges


async def _schedules_page(visit: Visit, **extra: Any) -> Response:
    page = await _staff_page(visit)
    listed = await visit.get("departments", "/schedules", min_position=extra.pop("after", None))
    status = extra.pop("status", 200)
    return visit.render(
        "schedules.html", status, listed=listed, days=DAYS, values=extra.pop("values", {}),
        **extra, **page,
    )  # fmt: skip


@router.get("/schedules")
async def schedules(visit: Current, after: int | None = None) -> Response:
    return await _schedules_page(visit, after=after)


@router.post("/schedules")
async def create_schedule(visit: Current) -> Response:
    await _staff_page(visit)
    form = await visit.form()
    body: dict[str, Any] = body_from(form, ("name", "timezone"))
    body["weekly"] = {
        day: _hours(str(form.get(f"weekly.{day}") or ""))
        for day in DAYS
        if str(form.get(f"weekly.{day}") or "").strip()
    }
    body["holidays"] = str(form.get("holidays") or "").split()
    try:
        answer = await visit.call("POST", "departments", "/schedules", json=body)
    except ApiProblem as problem:
        return await _schedules_page(visit, status=problem.status, problem=problem, values=body)
    return visit.redirect(f"/schedules?after={answer.body['position']}")


# ---------------------------------------------------------------- categories, settings


async def _support_page(visit: Visit, **extra: Any) -> Response:
    page = await _staff_page(visit)
    after = extra.pop("after", None)
    categories = await visit.get("tickets", "/categories", min_position=after)
    settings = await visit.get("tickets", "/support/settings", min_position=after)
    offered = await visit.get("tickets", "/support/departments")
    names = {d["id"]: pick(d["name"], visit.lang) for d in offered}
    status = extra.pop("status", 200)
    return visit.render(
        "support_settings.html", status, categories=categories, settings=settings, names=names,
        values=extra.pop("values", {}), **extra, **page,
    )  # fmt: skip


@router.get("/support/settings")
async def support_settings(visit: Current, after: int | None = None) -> Response:
    return await _support_page(visit, after=after)


@router.post("/support/settings")
async def change_support_settings(visit: Current) -> Response:
    await _staff_page(visit)
    form = await visit.form()
    body: dict[str, Any] = body_from(form, ("rating_mode",))
    for name in ("transfer_notices_shown", "close_after_days", "rate_after_days"):
        raw = str(form.get(name) or "").strip()
        body[name] = int(raw) if raw.isdigit() else (None if raw == "" else raw)
    try:
        answer = await visit.call("PUT", "tickets", "/support/settings", json=body)
    except ApiProblem as problem:
        return await _support_page(visit, status=problem.status, problem=problem)
    return visit.redirect(f"/support/settings?after={answer.body['position']}", visit.t("saved"))


@router.post("/categories")
async def create_category(visit: Current) -> Response:
    await _staff_page(visit)
    form = await visit.form()
    body = body_from(form, ("topic.en", "topic.ru", "department_id", "warning"), booleans=("paid",))
    try:
        answer = await visit.call("POST", "tickets", "/categories", json=body)
    except ApiProblem as problem:
        return await _support_page(visit, status=problem.status, problem=problem, values=body)
    return visit.redirect(f"/support/settings?after={answer.body['position']}")
