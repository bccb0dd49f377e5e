"""What every page handler shares: the visit (session, user, API calls), rendering, forms.

Rules it keeps:

* A page that needs a user raises ``SignInAgain`` when there is none (or the
  token is no longer accepted): the app answers with the login form's address
  and the page to come back to (a local path only, never another site).
* Every POST goes through ``Visit.form()``, which refuses (403, nothing called)
  a form without the session's CSRF token.
* Every response carries the session cookie (``HttpOnly``, ``SameSite=Lax``),
  so a sign-in, a language or a flash message is kept, and ``SECURITY_HEADERS``
  (no caching, no framing, our own script file only). It is sealed again only
  when the visit changed the session (or it came without one that opened);
  otherwise the cookie that came is sent back as it was, which renews its
  ``Max-Age`` all the same without an encryption per page.
* Templates are read and compiled once per process (no check of the files at
  every render: a changed template needs a restart), and a time is formatted
  once per value and language (``format_time``, a pure function, remembered).
  Times and statuses go through the filters ``|when`` and ``|status`` (the
  page's language from the context).
* ``can(right)`` only decides what to show; the service decides what is allowed.
* A page's per-request work runs on the event loop: nothing of it goes to a
  worker thread (``current_visit``).
* Forms map to API bodies by their field names; dotted names nest
  (``name.en`` -> ``{"name": {"en": ...}}``); empty optional fields are left out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from starlette.datastructures import FormData

from services.console.i18n import LANGUAGES, pick, preferred, translate
from services.console.sessions import COOKIE, CSRF_FIELD, MAX_AGE, Sealer, Session, check_csrf
from services.console.settings import ConsoleSettings
from services.console.upstream import Answer, ApiProblem, SignInAgain, Upstream

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


# Pages are private (no-store), never framed (clickjacking), run only our own script file
# (no inline script, so an injected one would not run), post forms only to this site.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class CsrfRefused(Exception):
    """A form came without the session's CSRF token."""


def format_time(value: Any, lang: str) -> str:
    """An API time as the page shows it (UTC, minutes)."""
    if not value:
        return ""
    if isinstance(value, str):
        return _formatted(value, lang)
    return _format(value, lang)


# A queue page shows a few dozen moments, mostly the same ones page after page: parsing and
# formatting each was a tenth of the page's own time.
@functools.lru_cache(maxsize=4096)
def _formatted(value: str, lang: str) -> str:
    return _format(value, lang)


def _format(value: Any, lang: str) -> str:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.strftime("%d.%m.%Y %H:%M UTC" if lang == "ru" else "%Y-%m-%d %H:%M UTC")


@pass_context
def _when(context: Context, value: Any) -> str:
    """``{{ ticket.updated_at|when }}``: a time in the page's language."""
    return format_time(value, context["lang"])


@pass_context
def _status(context: Context, value: str) -> str:
    """``{{ ticket.status|status }}``: a ticket's status in the page's language."""
    return translate(context["lang"], "status_" + value)


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        # Without this, every template a page uses (each row's include too) was a stat()
        # of its file per render, to see whether it changed: 40 a queue page.
        auto_reload=False,
    )
    # Filters, not functions in the context: Jinja calls a filter directly and a function
    # through ``Context.call``, whose checks cost more than the formatting itself (a queue
    # page shows 50 times and 25 statuses: its rows render in 0.28 ms instead of 0.42).
    env.filters["when"] = _when
    env.filters["status"] = _status
    return env


@dataclass(frozen=True)
class Console:
    """What the app holds for every visit (in ``app.state.console``)."""

    settings: ConsoleSettings
    sealer: Sealer
    env: Environment


@dataclass
class Visit:
    """One request of one browser: its session, its user and the calls made for it."""

    request: Request
    session: Session
    api: Upstream
    env: Environment
    sealer: Sealer
    settings: ConsoleSettings
    me: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The cookie the request came with and the session as it opened (None when there
    # was none or it did not open): unchanged, the same cookie goes back (``_seal``).
    cookie: str | None = None
    opened: Session | None = None
    # The browser's preferred language, read from its header once per visit (a page's
    # words ask for ``lang`` about a hundred times).
    accepted: str | None = None

    # ------------------------------------------------------------ who

    @property
    def lang(self) -> str:
        if self.session.lang:
            return self.session.lang
        if self.accepted is None:
            self.accepted = preferred(self.request.headers.get("accept-language"))
        return self.accepted

    @property
    def address(self) -> str | None:
        return self.request.client.host if self.request.client else None

    def t(self, key: str, **values: Any) -> str:
        return translate(self.lang, key, **values)

    def can(self, right: str) -> bool:
        me = self.me or {}
        return bool(me.get("full_access")) or right in me.get("permissions", ())

    async def signed_in(self, kind: str | None = None) -> dict[str, Any]:
        """The user (``GET /me``, as answered a few seconds ago at most: ``Upstream.me``);
        ``SignInAgain`` without one, 404 for the other kind."""
        token = self.session.token
        if token is None:
            raise SignInAgain()
        if self.me is None:
            self.me = await self.api.me(token, self.address)
        assert self.me is not None
        if kind is not None and self.me.get("kind") != kind:
            raise ApiProblem(404, "not_found", "no such page for this account")
        return self.me

    # ------------------------------------------------------------ calls

    async def call(
        self, method: str, service: str, path: str, *, json: Any = None, params: Any = None
    ) -> Answer:
        return await self.api.call(
            method,
            service,
            path,
            token=self.session.token,
            address=self.address,
            json=json,
            params=params,
        )

    async def get(self, service: str, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        return (await self.call("GET", service, path, params=clean)).body

    async def message_of(self, ticket: dict[str, Any]) -> dict[str, Any] | None:
        """The message to the client a thread was opened by (its text stays with the clients
        service, sealed; the thread only names it), or None for an ordinary ticket."""
        ref = ticket.get("message_ref")
        if not ref:
            return None
        sent = await self.get("clients", f"/clients/{ticket['client_id']}/messages", limit=500)
        return next((m for m in sent if m.get("message_id") == ref), None)

    async def form(self) -> FormData:
        """The posted form, once its CSRF token is checked."""
        data = await self.request.form()
        if not check_csrf(self.session, data.get(CSRF_FIELD)):
            raise CsrfRefused()
        return data

    # ------------------------------------------------------------ answers

    def _seal(self, response: Response) -> Response:
        unchanged = self.opened is not None and self.opened == self.session
        response.set_cookie(
            COOKIE,
            self.cookie if unchanged and self.cookie else self.sealer.seal(self.session),
            max_age=MAX_AGE,
            httponly=True,
            samesite="lax",
            secure=self.settings.console_secure_cookies,
            path="/",
        )
        response.headers.update(SECURITY_HEADERS)
        return response

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        flash, self.session.flash = self.session.flash, None
        values: dict[str, Any] = dict(
            visit=self,
            me=self.me,
            session=self.session,
            t=self.t,
            lang=self.lang,
            languages=LANGUAGES,
            pick=lambda v: pick(v, self.lang),
            csrf_field=CSRF_FIELD,
            csrf=self.session.csrf,
            flash=flash,
            path=self.request.url.path,
        )
        values.update(context)
        page = self.env.get_template(template).render(values)
        return self._seal(HTMLResponse(page, status_code=status))

    def redirect(self, url: str, flash: str | None = None) -> Response:
        if flash:
            self.session.flash = flash
        return self._seal(RedirectResponse(url, status_code=303))

    def to_login(self) -> Response:
        path = self.request.url.path
        if self.request.url.query:
            path += "?" + self.request.url.query
        target = "/login" if self.request.method != "GET" else f"/login?next={quote(path)}"
        return self.redirect(target)


def local_path(target: str | None, default: str = "/") -> str:
    """Only a path on this site may follow a login (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def body_from(
    form: FormData, names: tuple[str, ...], booleans: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The API body of a form: its fields by name, dotted ones nested, empty ones left out;
    checkboxes in ``booleans`` are true when ticked and false when not."""
    body: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        *outer, last = name.split(".")
        target = body
        for part in outer:
            target = target.setdefault(part, {})
        target[last] = value

    for name in names:
        value = form.get(name)
        if isinstance(value, str) and value.strip() != "":
            put(name, value.strip() if name not in ("password", "new_password") else value)
    for name in booleans:
        put(name, form.get(name) in ("on", "true", "1"))
    return body


def visit_of(request: Request) -> Visit:
    """The request's visit, made once: the session opened from its cookie, ``?lang=`` applied."""
    made: Visit | None = getattr(request.state, "visit", None)
    if made is not None:
        return made
    console: Console = request.app.state.console
    cookie = request.cookies.get(COOKIE)
    opened = console.sealer.opened(cookie)
    visit = Visit(
        request=request,
        session=opened or Session(),
        api=request.app.state.upstream,
        env=console.env,
        sealer=console.sealer,
        settings=console.settings,
        cookie=cookie,
        opened=replace(opened) if opened is not None else None,  # a copy: the visit may change it
    )
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES:
        visit.session.lang = chosen
    request.state.visit = visit
    return visit


async def current_visit(request: Request) -> Visit:
    """``visit_of`` as the pages' dependency. Async because FastAPI hands a plain
    function dependency to a worker thread: a thread hop per page for no I/O at all."""
    return visit_of(request)


Current = Annotated[Visit, Depends(current_visit)]
