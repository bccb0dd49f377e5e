"""The console's own logic: sealed sessions, CSRF, forms to API bodies, redirects, words,
what it remembers for a few seconds; its calls to the services against a real local HTTP
server (aiohttp's, on 127.0.0.1), a closed port and a server that drops the connection."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from starlette.datastructures import FormData

from services.console.i18n import WORDS, pick, preferred, translate
from services.console.pages.support import _counts
from services.console.recent import DEPARTMENTS_SECONDS, ME_SECONDS, token_key
from services.console.sessions import Sealer, Session, check_csrf
from services.console.settings import ConsoleSettings
from services.console.upstream import SERVICES, ApiProblem, SignInAgain, Upstream
from services.console.web import TEMPLATES, body_from, local_path

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def test_a_session_opens_only_with_its_key_and_unaltered() -> None:
    sealer = Sealer(os.urandom(32))
    session = Session(lang="ru")
    session.sign_in("token-abc", "staff", "s1")
    sealed = sealer.seal(session)
    assert "token-abc" not in sealed  # the token is not readable in the cookie
    opened = sealer.open(sealed)
    assert (opened.token, opened.kind, opened.principal_id, opened.lang) == (
        "token-abc", "staff", "s1", "ru",
    )  # fmt: skip
    assert opened.csrf == session.csrf
    # Another key, a changed byte, garbage: no session (and so no token) at all.
    assert Sealer(os.urandom(32)).open(sealed).token is None
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert sealer.open(flipped).token is None
    assert sealer.open("not a cookie").token is None
    assert sealer.open(None).token is None


def test_signing_in_and_out_changes_the_csrf_token_and_keeps_only_the_language() -> None:
    session = Session(lang="ru")
    anonymous = session.csrf
    session.sign_in("t", "client", "c1")
    assert session.csrf != anonymous
    session.back_token = "staff-token"
    session.sign_out()
    assert (session.token, session.back_token, session.lang) == (None, None, "ru")
    assert not check_csrf(session, anonymous)
    assert check_csrf(session, session.csrf)
    assert not check_csrf(session, None)
    assert not check_csrf(session, "")


def test_a_form_becomes_the_api_body_by_its_field_names() -> None:
    form = FormData(
        [
            ("name.en", " Billing "), ("name.ru", ""), ("support.description", "Invoices"),
            ("support.enabled", "on"), ("password", " keep spaces "), ("csrf_token", "x"),
        ]
    )  # fmt: skip
    body = body_from(
        form,
        ("name.en", "name.ru", "support.description", "password"),
        booleans=("support.enabled", "full_access"),
    )
    assert body == {
        "name": {"en": "Billing"},
        "support": {"description": "Invoices", "enabled": True},
        "password": " keep spaces ",
        "full_access": False,
    }


def test_only_a_local_path_follows_a_login() -> None:
    assert local_path("/tickets/1?after=3") == "/tickets/1?after=3"
    for outside in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "", None):
        assert local_path(outside, "/") == "/"


def test_every_word_is_there_in_english_and_russian() -> None:
    assert all(en and ru for en, ru in WORDS.values()), [k for k, v in WORDS.items() if not all(v)]
    assert translate("ru", "queue") == "Активные запросы"
    assert translate("en", "queue") == "Active requests"
    assert translate("ru", "no-such-key") == "no-such-key"
    assert pick({"en": "Sales", "ru": ""}, "ru") == "Sales"
    assert pick({"en": "Sales", "ru": "Продажи"}, "ru") == "Продажи"
    assert preferred("ru-RU,ru;q=0.9,en;q=0.8") == "ru"
    assert preferred("de-DE,fr") == "en"


def test_every_word_the_pages_use_is_translated() -> None:
    used: set[str] = set()
    for page in Path(TEMPLATES).glob("*.html"):
        used |= set(re.findall(r"""\bt\(["']([a-z_\-]+)["']\)""", page.read_text()))
    assert used, "the pages use t()"
    assert used <= set(WORDS), sorted(used - set(WORDS))


def test_every_word_the_pages_build_from_api_values_is_there() -> None:
    families = {
        "status_": ("open", "answered", "closed"),
        "sort_": ("waiting", "deadline", "-updated", "-opened"),
        "entry_": ("opened", "message", "internal_note", "assigned", "transfer", "closed",
                   "reopened", "rated", "rating_requested", "linked_to_client"),
        "change_": ("TicketMessagePosted", "TicketAssigned", "TicketTransferred",
                    "TicketClosed", "TicketReopened", "TicketRated"),
        "notice_": ("new_ticket", "client_reply", "ticket_transferred", "deadline_near"),
        "characteristic_": ("normal", "good", "conflict"),
        "rating_mode_": ("message", "ticket"),
    }  # fmt: skip
    missing = [p + v for p, values in families.items() for v in values if p + v not in WORDS]
    assert not missing, missing


@contextlib.asynccontextmanager
async def services(handler: Handler) -> AsyncIterator[ConsoleSettings]:
    """A real local HTTP server answering as ``handler`` does for every path and method,
    and the console's settings naming it as each of the five services."""
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        yield ConsoleSettings(**{f"{name}_url": url for name in SERVICES})
    finally:
        await server.close()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_401_signs_out_but_an_account_not_known_yet_is_a_moment_to_wait() -> None:
    """A service whose access copy has not caught up with a new account answers 401
    ``unknown_principal``: the console keeps the session and shows a 503 to retry."""
    codes = iter(("unknown_principal", "session_ended"))

    async def answer(_: web.Request) -> web.Response:
        return web.json_response({"error": {"code": next(codes), "message": "no"}}, status=401)

    async with services(answer) as settings:
        api = Upstream(settings)
        try:
            with pytest.raises(ApiProblem) as waiting:
                await api.call("GET", "tickets", "/tickets", token="t")
            assert (waiting.value.status, waiting.value.code) == (503, "access_not_known_yet")
            with pytest.raises(SignInAgain):
                await api.call("GET", "tickets", "/tickets", token="t")
        finally:
            await api.close()


async def test_a_call_goes_as_the_api_expects_and_its_answer_comes_back_as_sent() -> None:
    asked: list[web.Request] = []
    bodies: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        asked.append(request)
        bodies.append(await request.read())
        if request.path == "/tickets":
            headers = {"X-Total-Count": "42", "X-Status-Counts": "open=40, closed=2"}
            # A cookie set by a service is not kept for anybody's next call.
            return web.json_response([{"id": "t1"}], headers=headers | {"Set-Cookie": "k=v"})
        if request.path == "/moved":
            raise web.HTTPFound("/tickets")  # not followed: an answer that is not 2xx
        error = {"code": "invalid", "message": "too short", "fields": [{"field": "body"}]}
        return web.json_response({"error": error | {"min": 3}}, status=422)

    async with services(answer) as settings:
        # By name: aiohttp's default cookie jar would keep no cookie from an address anyway.
        settings.tickets_url = settings.tickets_url.replace("127.0.0.1", "localhost")
        api = Upstream(settings)
        try:
            params = {"status": "open", "limit": 25, "counts": True, "none": None, "q": "a+b &"}
            got = await api.call(
                "GET", "tickets", "/tickets", token="tk", address="203.0.113.9", params=params
            )
            assert (got.status, got.body, got.total) == (200, [{"id": "t1"}], 42)
            assert got.headers["x-status-counts"] == got.headers["X-STATUS-COUNTS"]
            first = asked[0]
            assert first.query == {
                "status": "open", "limit": "25", "counts": "true", "q": "a+b &",
            }  # fmt: skip
            assert first.headers["Authorization"] == "Bearer tk"
            assert first.headers["X-Forwarded-For"] == "203.0.113.9"
            with pytest.raises(ApiProblem) as refused:
                await api.call(
                    "POST", "tickets", "/tickets/t1/messages", token="tk", json={"body": "é"}
                )
            assert (refused.value.status, refused.value.code) == (422, "invalid")
            assert (refused.value.field, refused.value.extra["min"]) == ("body", 3)
            assert asked[1].content_type == "application/json"
            assert orjson.loads(bodies[1]) == {"body": "é"}
            assert "Cookie" not in asked[1].headers
            with pytest.raises(ApiProblem) as moved:
                await api.call("GET", "tickets", "/moved", token="tk")
            assert moved.value.status == 302
            assert [r.path for r in asked] == ["/tickets", "/tickets/t1/messages", "/moved"]
        finally:
            await api.close()


async def test_a_service_that_does_not_answer_is_a_503_naming_it() -> None:
    """Refused, too slow, or gone mid-answer: ``service_unavailable`` with the service's name
    (and no token in the message)."""
    let_go = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        await let_go.wait()
        return web.json_response({})

    async def drop(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()  # the request read by nobody, the connection closed

    dropping = await asyncio.start_server(drop, "127.0.0.1", 0)
    dropped_at = dropping.sockets[0].getsockname()[1]
    try:
        async with services(slow) as settings:
            settings.console_upstream_timeout = 0.2
            settings.clients_url = f"http://127.0.0.1:{closed_port()}"
            settings.notifier_url = f"http://127.0.0.1:{dropped_at}"
            api = Upstream(settings)
            try:
                for service in ("clients", "tickets", "notifier"):
                    with pytest.raises(ApiProblem) as unavailable:
                        await api.call("GET", service, "/x", token="secret-token")
                    problem = unavailable.value
                    assert (problem.status, problem.code) == (503, "service_unavailable")
                    assert problem.message == f"the {service} service does not answer"
                    assert "secret-token" not in str(problem)
                assert not await api.answers("clients")
            finally:
                let_go.set()
                await api.close()
    finally:
        dropping.close()
        await dropping.wait_closed()


async def test_a_stream_comes_line_by_line_and_ends_with_the_services_status() -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer good":
            return web.json_response({"error": {"code": "forbidden", "message": "no"}}, status=403)
        if request.path == "/health":
            return web.json_response({"status": "ok"})
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        await stream.write(b': hello\r\nevent: ticket\ndata: {"id": 1}\n\n')
        await stream.write(b"event: end\ndata: {}\n\n")
        return stream

    async with services(answer) as settings:
        api = Upstream(settings)
        try:
            got = [line async for line in api.lines("tickets", "/live", token="good", address=None)]
            assert got == [": hello", "event: ticket", 'data: {"id": 1}', "", "event: end",
                           "data: {}", ""]  # fmt: skip
            with pytest.raises(ApiProblem) as refused:
                async for _ in api.lines("tickets", "/live", token="bad", address=None):
                    pass
            assert (refused.value.status, refused.value.code) == (403, "forbidden")
            api.urls["tickets"] = f"http://127.0.0.1:{closed_port()}"
            with pytest.raises(ApiProblem) as unavailable:
                async for _ in api.lines("tickets", "/live", token="good", address=None):
                    pass
            assert (unavailable.value.status, unavailable.value.code) == (
                503, "service_unavailable",
            )  # fmt: skip
        finally:
            await api.close()


class Clock:
    """A clock the test moves (``Recent``'s seconds without waiting for them; the memory
    itself is tested in tests/unit/test_recent.py)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_me_is_asked_for_again_after_a_few_seconds_or_after_the_sessions_own_write() -> None:
    asked: list[tuple[str, str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        asked.append((request.method, request.path, token))
        if request.path == "/me":
            return web.json_response({"id": token, "seen": len(asked)})
        if request.path == "/support/departments":
            return web.json_response([{"id": "d1", "name": {"en": "Hosting"}}])
        return web.Response(status=204)

    clock = Clock()
    async with services(answer) as settings:
        api = Upstream(settings)
        api.recent_me.clock = api.recent_departments.clock = clock
        try:
            first = await api.me("token-1", None)
            assert await api.me("token-1", None) == first  # kept: one call
            assert (await api.me("token-2", None))["id"] == "token-2"  # per token
            assert len(asked) == 2
            clock.now += ME_SECONDS
            assert await api.me("token-1", None) != first  # too old: asked again
            await api.me("token-2", None)
            assert len(asked) == 4
            # The session's own write (any call but a GET) forgets its /me, not another's.
            await api.call("POST", "identity", "/me/password", token="token-1", json={})
            await api.call("GET", "tickets", "/tickets", token="token-2")
            await api.me("token-1", None)
            await api.me("token-2", None)
            assert [a[1:] for a in asked[4:]] == [
                ("/me/password", "token-1"), ("/tickets", "token-2"), ("/me", "token-1"),
            ]  # fmt: skip
            # The departments as staff see them: one call for every member, then again later.
            assert await api.support_departments("token-1", None) == [
                {"id": "d1", "name": {"en": "Hosting"}}
            ]
            await api.support_departments("token-2", None)
            clock.now += DEPARTMENTS_SECONDS
            await api.support_departments("token-2", None)
            paths = [a[1:] for a in asked if a[1] == "/support/departments"]
            assert paths == [
                ("/support/departments", "token-1"),
                ("/support/departments", "token-2"),
            ]
            # Tokens are not kept as keys: their hashes are.
            assert set(api.recent_me.keys()) == {token_key("token-1"), token_key("token-2")}
            assert token_key("token-1") == hashlib.sha256(b"token-1").digest()
        finally:
            await api.close()


def test_the_queue_reads_its_counts_from_the_pages_header() -> None:
    assert _counts("open=12, answered=3, closed=40") == {"open": 12, "answered": 3, "closed": 40}
    assert _counts("closed=1") == {"open": 0, "answered": 0, "closed": 1}
    assert _counts("") == {"open": 0, "answered": 0, "closed": 0}


async def test_an_unchanged_session_goes_back_as_its_cookie_and_a_changed_one_sealed_again(
    tmp_path: Path,
) -> None:
    from services.console.app import create_app

    settings = ConsoleSettings(console_secret="s" * 32, var_dir=str(tmp_path))
    app = create_app(settings)
    app.state.upstream = Upstream(settings)  # the login form calls no service
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as browser:

        async def cookie_after(path: str, cookie: str | None) -> httpx.Response:
            browser.cookies.clear()
            headers = {"Cookie": f"console_session={cookie}"} if cookie else {}
            answer = await browser.get(path, headers=headers)
            assert answer.status_code == 200
            return answer

        first = (await cookie_after("/login", None)).cookies["console_session"]
        again = await cookie_after("/login", first)
        # Nothing changed: the very cookie that came, its Max-Age renewed.
        assert again.cookies["console_session"] == first
        assert "Max-Age=43200" in again.headers["set-cookie"]
        # A change (the language) is sealed again, and opens with it.
        changed = (await cookie_after("/login?lang=ru", first)).cookies["console_session"]
        assert changed != first
        assert Sealer(settings.session_key()).open(changed).lang == "ru"
        # A cookie that does not open is never sent back: a new session is sealed.
        forged = first[:-2] + ("A" if first[-2] != "A" else "B") + first[-1]
        renewed = (await cookie_after("/login", forged)).cookies["console_session"]
        assert renewed not in (forged, first)
        assert Sealer(settings.session_key()).opened(renewed) is not None
    await app.state.upstream.close()


def test_the_department_options_are_made_once_per_answer_and_choice_and_escaped() -> None:
    from services.console.pages.support import _Named

    named = _Named([], {"d1": "Billing", "d2": "R&D <x>"})
    plain = named.options_for(None)
    assert plain == (
        '<option value="d1">Billing</option><option value="d2">R&amp;D &lt;x&gt;</option>'
    )
    assert named.options_for("d2") == (
        '<option value="d1">Billing</option><option value="d2" selected>R&amp;D &lt;x&gt;</option>'
    )
    assert named.options_for("d2") is named.options_for("d2")  # made once
    # What a browser sends is no key unless it is a department: it selects nothing.
    assert named.options_for("<script>") is plain
    assert set(named.options) == {None, "d2"}


def test_a_time_is_shown_in_the_pages_language_and_formatted_once() -> None:
    from services.console.web import _formatted, format_time

    assert format_time("2026-03-02T09:05:00Z", "en") == "2026-03-02 09:05 UTC"
    assert format_time("2026-03-02T09:05:00Z", "ru") == "02.03.2026 09:05 UTC"
    assert format_time("not a time", "en") == "not a time"
    assert format_time(None, "en") == ""
    hits = _formatted.cache_info().hits
    format_time("2026-03-02T09:05:00Z", "en")
    assert _formatted.cache_info().hits == hits + 1


def test_times_and_statuses_are_shown_in_the_pages_language_by_their_filters() -> None:
    from services.console.web import environment

    env = environment()
    for page in Path(TEMPLATES).glob("*.html"):
        env.get_template(page.name)  # compiles: every filter a page names exists
    ticket = {
        "id": "t1", "status": "open", "subject": "Disk", "department_id": "d1",
        "due_at": "2026-03-02T09:05:00Z", "updated_at": "2026-03-01T08:00:00Z",
    }  # fmt: skip
    rows = env.get_template("queue_rows.html")
    for lang, due, status in (
        ("en", "2026-03-02 09:05 UTC", "waiting for staff"),
        ("ru", "02.03.2026 09:05 UTC", translate("ru", "status_open")),
    ):
        t = functools.partial(translate, lang)
        html = rows.render(tickets=[ticket], names={"d1": "Hosting"}, lang=lang, t=t)
        assert f"<td>{due}</td>" in html
        assert f"<td>{status}</td>" in html
        assert "<td>Hosting</td>" in html
