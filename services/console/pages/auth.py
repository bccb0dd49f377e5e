"""Logging in and out, the second factor, forgotten and changed passwords.

Rules it keeps:

* The login form posts ``login``, ``password`` and, when identity answers
  that a one-time code is needed (an error code naming ``otp``), ``otp``: the
  form is shown again with that field, the login kept, the password not.
* After a login the browser goes to ``next`` only when it is a path on this
  site; the session gets a new CSRF token.
* Logging out ends the session at identity too (and the impersonation behind
  it, if any); the cookie keeps only the language.
* ``POST /auth/forgot`` is answered the same whether the login exists or not;
  the mailed link opens ``/reset?token=``, whose form posts ``token`` and
  ``new_password``.
* The second factor (staff, ``/2fa``): the ``otpauth://`` URI and its secret are
  shown once, in the answer that set them up, and kept nowhere in the console;
  confirming with ``code`` shows the recovery codes once. A login whose session
  may only set the factor up (``scope: second_factor_setup``) goes there.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter
from fastapi.responses import Response

from services.console.upstream import ApiProblem, SignInAgain
from services.console.web import Current, body_from, local_path

router = APIRouter()


def home_of(kind: str | None) -> str:
    return "/my/requests" if kind == "client" else "/queue"


@router.get("/")
async def home(visit: Current) -> Response:
    if not visit.session.signed_in:
        return visit.redirect("/login")
    return visit.redirect(home_of(visit.session.kind))


@router.get("/login")
async def login_form(visit: Current, next: str | None = None) -> Response:
    return visit.render("login.html", next=local_path(next, ""), values={}, otp_needed=False)


@router.post("/login")
async def log_in(visit: Current) -> Response:
    form = await visit.form()
    body = body_from(form, ("login", "password", "otp"))
    target = local_path(str(form.get("next") or ""), "")
    try:
        answer = await visit.api.call(
            "POST", "identity", "/auth/login", token=None, address=visit.address, json=body
        )
    except ApiProblem as problem:
        otp_needed = "otp" in problem.code or problem.field == "otp"
        return visit.render(
            "login.html",
            401 if problem.status in (401, 403) else problem.status,
            problem=problem,
            next=target,
            values={"login": body.get("login", "")},
            otp_needed=otp_needed,
        )
    principal: dict[str, Any] = answer.body["principal"]
    visit.session.sign_in(answer.body["access_token"], principal["kind"], principal["id"])
    if answer.body.get("scope") == "second_factor_setup":  # a session for that only
        return visit.redirect("/2fa", flash=visit.t("second_factor_required"))
    return visit.redirect(target or home_of(principal["kind"]))


@router.post("/logout")
async def log_out(visit: Current) -> Response:
    await visit.form()
    for token in (visit.session.token, visit.session.back_token):
        if token:
            # Already ended: the console forgets it either way.
            with contextlib.suppress(ApiProblem, SignInAgain):
                await visit.api.call("POST", "identity", "/auth/logout", token=token)
    visit.session.sign_out()
    return visit.redirect("/login")


@router.get("/password")
async def password_form(visit: Current) -> Response:
    await visit.signed_in()
    return visit.render("password.html")


@router.post("/password")
async def change_password(visit: Current) -> Response:
    await visit.signed_in()
    form = await visit.form()
    body = body_from(form, ("current_password", "new_password"))
    try:
        await visit.call("POST", "identity", "/me/password", json=body)
    except ApiProblem as problem:
        return visit.render("password.html", problem.status, problem=problem)
    return visit.redirect(home_of(visit.session.kind), flash=visit.t("password_changed"))


@router.get("/forgot")
async def forgot_form(visit: Current) -> Response:
    return visit.render("forgot.html", sent=False)


@router.post("/forgot")
async def forgot(visit: Current) -> Response:
    form = await visit.form()
    try:
        await visit.api.call(
            "POST", "identity", "/auth/forgot", token=None, address=visit.address,
            json=body_from(form, ("login",)),
        )  # fmt: skip
    except ApiProblem as problem:
        if problem.status != 404:  # never tell whether the login exists
            return visit.render("forgot.html", problem.status, problem=problem, sent=False)
    return visit.render("forgot.html", sent=True)


@router.get("/reset")
async def reset_form(visit: Current, token: str | None = None) -> Response:
    return visit.render("reset.html", token=token)


@router.post("/reset")
async def reset(visit: Current) -> Response:
    form = await visit.form()
    body = body_from(form, ("token", "new_password"))
    try:
        await visit.api.call(
            "POST", "identity", "/auth/reset", token=None, address=visit.address, json=body
        )
    except ApiProblem as problem:
        return visit.render("reset.html", problem.status, problem=problem, token=body.get("token"))
    return visit.redirect("/login", flash=visit.t("reset_done"))


# ---------------------------------------------------------------- the second factor


def _secret_of(uri: str) -> str:
    """The base32 secret of an ``otpauth://`` URI, for typing into an app by hand."""
    return parse_qs(urlsplit(uri).query).get("secret", [""])[0]


@router.get("/2fa")
async def second_factor_form(visit: Current) -> Response:
    """Staff's own second factor: set it up (``POST /me/2fa``), confirm it with a
    ``code``, see the recovery codes once; or turn it off with a ``code``."""
    await visit.signed_in("staff")
    return visit.render("second_factor.html", step="start")


@router.post("/2fa")
async def second_factor_start(visit: Current) -> Response:
    await visit.signed_in("staff")
    await visit.form()
    try:
        answer = await visit.call("POST", "identity", "/me/2fa")
    except ApiProblem as problem:
        return visit.render("second_factor.html", problem.status, step="start", problem=problem)
    uri = str(answer.body["uri"])
    # Shown once, in this answer only: the URI and its secret are never kept in the
    # session cookie or anywhere else in the console.
    return visit.render("second_factor.html", step="confirm", uri=uri, secret=_secret_of(uri))


@router.post("/2fa/confirm")
async def second_factor_confirm(visit: Current) -> Response:
    await visit.signed_in("staff")
    form = await visit.form()
    try:
        answer = await visit.call(
            "POST", "identity", "/me/2fa/confirm", json=body_from(form, ("code",))
        )
    except ApiProblem as problem:
        return visit.render("second_factor.html", problem.status, step="confirm", problem=problem)
    return visit.render(
        "second_factor.html", step="done", recovery_codes=answer.body["recovery_codes"]
    )


@router.post("/2fa/off")
async def second_factor_off(visit: Current) -> Response:
    await visit.signed_in("staff")
    form = await visit.form()
    try:
        await visit.call("DELETE", "identity", "/me/2fa", json=body_from(form, ("code",)))
    except ApiProblem as problem:
        return visit.render("second_factor.html", problem.status, step="start", problem=problem)
    return visit.redirect("/2fa", flash=visit.t("second_factor_off_done"))
