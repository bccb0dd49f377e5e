"""The console's ASGI app: pages, static files, ``/health``, ``/ready``, ``/metrics``.

Rules it keeps: the process holds no user data (sessions are sealed cookies;
``services.console.recent`` keeps a session's ``/me`` for a few seconds only),
so it scales by replicas and restarts lose nothing; ``/ready`` is 200 only while
identity answers (nobody can log in otherwise); failures become pages, never a
stack trace: a service refusing shows its message, one not answering a 503 page,
and a signed-in user's problem page keeps their header (account links, sign out).
Every answer says how long the console took (``Server-Timing: total;dur=`` in
ms, from the request's arrival to the answer's start: the service calls and the
rendering) and each service call's (``tickets;dur=…;desc="/tickets"``), which
the browser's developer tools and ``bench.console`` read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.console.pages import (
    admin,
    auth,
    clients,
    companies,
    operations,
    portal,
    support,
)
from services.console.sessions import Sealer
from services.console.settings import ConsoleSettings
from services.console.upstream import ApiProblem, SignInAgain, Upstream, timings
from services.console.web import STATIC, Console, CsrfRefused, environment, visit_of
from shared.observability import logs
from shared.runtime import CorrelationMiddleware

log = structlog.get_logger("console")


class ServerTiming:
    """``Server-Timing: total;dur=<ms>`` on every HTTP answer (a pure ASGI middleware:
    no task or stream per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        calls: list[tuple[str, str, float]] = []
        timings.set(calls)

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                parts = [f"total;dur={took:.2f}"] + [
                    f'{service};dur={ms:.2f};desc="{path}"' for service, path, ms in calls
                ]
                header = (b"server-timing", ", ".join(parts).encode("latin-1", "replace"))
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, timed)


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()
    logs.configure("console", settings.log_level, settings.log_format)
    sealer = Sealer(settings.session_key())
    env = environment()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upstream = Upstream(settings)
        log.info("service.started", port=settings.console_port)
        try:
            yield
        finally:
            await app.state.upstream.close()
            log.info("service.stopped")

    app = FastAPI(title="Console", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.console = Console(settings, sealer, env)
    app.add_middleware(CorrelationMiddleware)
    app.add_middleware(ServerTiming)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(SignInAgain)
    async def sign_in_again(request: Request, _: SignInAgain) -> Response:
        visit = visit_of(request)
        visit.session.sign_out()
        return visit.to_login()

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, _: CsrfRefused) -> Response:
        visit = visit_of(request)
        return visit.render("problem.html", 403, title=visit.t("forbidden"), text=visit.t("csrf"))

    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, problem: ApiProblem) -> Response:
        visit = visit_of(request)
        if visit.session.signed_in and visit.me is None:
            # The page's calls run together, so one refusal can come before "me":
            # the problem page still shows who is signed in and their own links
            # (password, second factor, sign out). Without it, the page has none.
            with contextlib.suppress(ApiProblem, SignInAgain):
                await visit.signed_in()
        titles = {404: "not_found", 403: "forbidden", 503: "unavailable"}
        title = visit.t(titles.get(problem.status, "console"))
        text = visit.t("unavailable") if problem.status == 503 else problem.message
        return visit.render("problem.html", problem.status, title=title, text=text)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": "console"}

    @app.get("/ready", include_in_schema=False)
    async def ready(request: Request) -> JSONResponse:
        upstream: Upstream = request.app.state.upstream
        up = await upstream.answers("identity")
        body = {"ready": up, "service": "console", "identity": "up" if up else "down"}
        return JSONResponse(body, status_code=200 if up else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for module in (auth, portal, support, clients, companies, admin, operations):
        app.include_router(module.router)
    return app


def serve() -> None:
    import uvicorn

    settings = ConsoleSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.console_host,
        port=settings.console_port,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
