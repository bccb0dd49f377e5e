"""Calls to the five services' public APIs with the user's own token.

Rules it keeps:

* One ``aiohttp.ClientSession`` for the process, made on the first call inside
  the running loop (aiohttp binds it to the loop) and closed with the app: a
  keep-alive pool to each service, an idle connection kept 4 s (less than the
  services' 5). Not httpx: its client CPU per call (1.5 to 1.9 ms against
  aiohttp's 0.35 for the queue page's call, docs/benchmarks.md) was most of
  what the page added to the API call it wraps. No proxy from the environment
  (``trust_env=False``: a developer's HTTP proxy never sees these calls), no
  cookie jar (nothing one user's answer sets goes along with another user's
  call), no redirects followed (a 3xx is an answer like any other that is not
  2xx), every call within ``CONSOLE_UPSTREAM_TIMEOUT`` seconds in all.
* Query parameters go as strings (``True`` as ``true``); ``None`` is left
  out. JSON bodies are written with orjson, answers read with it.
* The caller's address goes along as ``X-Forwarded-For``; the services believe
  it only when they list the console among ``TRUSTED_PROXIES`` (IP allow-lists
  and session binding then apply to the browser's address, not the console's).
* An answer that is not 2xx becomes ``ApiProblem`` with the API's error as it
  was sent (code, message, field, extras such as ``changes``); a service that
  does not answer (connection refused, the time up, the connection dropped
  before the whole answer came) becomes a 503 ``service_unavailable`` naming
  it. A 401 is ``SignInAgain`` (token expired or session ended), which pages
  turn into the login form, except ``unknown_principal``: a service whose copy
  of identity's facts has not caught up with a new account yet, a 503 to try
  again shortly.
* Tokens are never logged: the client logs nothing itself, and errors carry
  only the service's name and path.
* A session's ``/me`` and the support departments' names are asked for at most
  every few seconds (``services.console.recent``); any other call but a GET made
  with a token makes that token's ``/me`` forgotten once it has answered.
* Each call's time is noted in ``timings`` (a context variable the app's
  ``ServerTiming`` sets per request): service, path without query, ms; the
  answer's ``Server-Timing`` header lists them.
* Besides calls: ``answers`` (is a service's ``/health`` 200 within 2 s, for
  ``/ready``) and ``lines`` (a server-sent-events answer line by line, with no
  time limit once connected, for the live queue), through the same session.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp.http_exceptions import LineTooLong

from services.console.recent import DEPARTMENTS_SECONDS, ME_SECONDS, token_key
from services.console.settings import ConsoleSettings
from shared.application.recent import Recent

SERVICES = ("identity", "departments", "tickets", "clients", "notifier")

# What a service that does not answer raises: refused, reset or dropped connections
# and malformed answers are ``ClientError``s; the time limits raise ``TimeoutError``
# (some of aiohttp's are both).
UNANSWERED = (aiohttp.ClientError, TimeoutError)
# ``/ready`` asks identity's ``/health``: two seconds, as a load balancer's check waits.
HEALTH_TIMEOUT = aiohttp.ClientTimeout(total=2)
# A live stream runs as long as the browser stays: only connecting is limited.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
# The longest line a live stream may send is twice this (aiohttp's line limit); the
# tickets service's events are one ticket's row each, far below it.
STREAM_BUFFER = 1 << 20
JSON_BODY = {"Content-Type": "application/json"}
# An idle connection is let go before the services' servers let it go (uvicorn closes one
# idle for 5 s): one kept longer could be closed by the service just as a call goes out on
# it, and aiohttp sends a GET again on a fresh connection but not a POST.
KEEPALIVE_SECONDS = 4.0

# The calls of the current request: (service, path, ms). A list shared by the
# request's tasks (``asyncio.gather`` copies the context, not the list).
timings: ContextVar[list[tuple[str, str, float]] | None] = ContextVar("timings", default=None)


class ApiProblem(Exception):
    """A service refused (or could not answer) a call: its status and its error as sent."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.field = status, code, message, field
        self.extra = extra or {}


class SignInAgain(Exception):
    """The token is no longer accepted (401)."""


@dataclass
class Answer:
    status: int
    body: Any
    total: int | None
    # As the service sent them, read case-insensitively (aiohttp's ``CIMultiDictProxy``:
    # ``answer.headers["x-status-counts"]``).
    headers: Mapping[str, str] = field(default_factory=dict)


def unavailable(service: str) -> ApiProblem:
    return ApiProblem(503, "service_unavailable", f"the {service} service does not answer")


def query(params: Mapping[str, Any] | None) -> list[tuple[str, str]] | None:
    """The query as aiohttp takes it: strings only (``True`` as ``true``, a list as the
    name repeated), ``None`` left out."""
    if not params:
        return None
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        for one in value if isinstance(value, list | tuple) else (value,):
            if one is not None:
                pairs.append((name, _text(one)))
    return pairs


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Upstream:
    """The services' APIs as one object; ``api.call("GET", "tickets", "/tickets", token=...)``."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.urls = {name: settings.upstream(name) for name in SERVICES}
        self.timeout = aiohttp.ClientTimeout(total=settings.console_upstream_timeout)
        self._session: aiohttp.ClientSession | None = None
        self.recent_me: Recent[bytes, Any] = Recent(ME_SECONDS)
        self.recent_departments: Recent[bytes, Any] = Recent(DEPARTMENTS_SECONDS)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The process's session, made on first use: aiohttp binds it to the running loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_SECONDS),
                timeout=self.timeout,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, service: str, path: str) -> str:
        return self.urls[service] + path

    def headers(self, token: str | None, address: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if address:
            headers["X-Forwarded-For"] = address
        return headers

    async def answers(self, service: str) -> bool:
        """Whether ``service``'s ``/health`` is 200 within ``HEALTH_TIMEOUT``."""
        try:
            async with self.session.get(
                self.url(service, "/health"), timeout=HEALTH_TIMEOUT, allow_redirects=False
            ) as answer:
                return answer.status == 200
        except UNANSWERED:
            return False

    async def lines(
        self, service: str, path: str, *, token: str | None, address: str | None
    ) -> AsyncGenerator[str, None]:
        """A streamed answer's lines (without their line ends) as they come: server-sent
        events. ``ApiProblem`` with the service's status when it is not 200, a 503
        when it cannot be reached or the stream breaks. Close it (``contextlib.aclosing``)
        when leaving early: the connection is closed then, never pooled half-read."""
        try:
            async with self.session.get(
                self.url(service, path),
                headers=self.headers(token, address),
                timeout=STREAM_TIMEOUT,
                read_bufsize=STREAM_BUFFER,
                allow_redirects=False,
            ) as answer:
                try:
                    if answer.status != 200:
                        content = await answer.read()
                        raise _problem(service, answer.status, content)
                    async for line in answer.content:
                        yield line.decode("utf-8", "replace").rstrip("\r\n")
                finally:
                    answer.close()
        except (*UNANSWERED, LineTooLong):
            raise unavailable(service) from None

    async def me(self, token: str, address: str | None) -> Any:
        """``GET /me`` for ``token``, as answered less than ``ME_SECONDS`` ago if it was."""
        return await self._remembered(
            self.recent_me, token_key(token), "identity", "/me", token, address
        )

    async def support_departments(self, token: str, address: str | None) -> Any:
        """``GET /support/departments`` as staff see it (every support department, the
        same for every member who may see the queue; ``token`` asks when it is not kept)."""
        return await self._remembered(
            self.recent_departments, b"staff", "tickets", "/support/departments", token, address
        )

    async def _remembered(
        self,
        memory: Recent[bytes, Any],
        key: bytes,
        service: str,
        path: str,
        token: str,
        address: str | None,
    ) -> Any:
        async def ask() -> Any:
            return (await self.call("GET", service, path, token=token, address=address)).body

        return await memory.answer(key, ask)

    async def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        token: str | None,
        address: str | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Answer:
        if method == "GET" or not token:
            return await self._call(method, service, path, token, address, json, params)
        try:
            return await self._call(method, service, path, token, address, json, params)
        finally:
            # A write may change what /me answers (a password, the second factor, rights).
            self.recent_me.forget(token_key(token))

    async def _call(
        self,
        method: str,
        service: str,
        path: str,
        token: str | None,
        address: str | None,
        json: Any,
        params: Mapping[str, Any] | None,
    ) -> Answer:
        started = time.perf_counter()
        headers = self.headers(token, address)
        data = None
        if json is not None:
            headers.update(JSON_BODY)
            data = orjson.dumps(json)
        try:
            async with self.session.request(
                method,
                self.url(service, path),
                params=query(params),
                data=data,
                headers=headers,
                allow_redirects=False,
            ) as response:
                status, answered = response.status, response.headers
                content = await response.read()
        except UNANSWERED:
            raise unavailable(service) from None
        noted = timings.get()
        if noted is not None:
            noted.append((service, path, (time.perf_counter() - started) * 1000))
        if 200 <= status < 300:
            total = answered.get("x-total-count")
            # The services answer UTF-8 JSON: orjson reads it faster than the standard json
            # (a queue page, 12 kB: 0.04 ms against 0.06).
            body = orjson.loads(content) if content else None
            return Answer(status, body, int(total) if total else None, answered)
        problem = _problem(service, status, content)
        if status == 401 and token:
            if problem.code == "unknown_principal":
                # A new account the service has not heard of yet (its access copy
                # follows identity's topic): the session is good, so the user
                # waits a moment instead of being signed out.
                raise ApiProblem(
                    503, "access_not_known_yet", f"the {service} service does not know you yet"
                )
            raise SignInAgain()
        raise problem


def _problem(service: str, status: int, content: bytes) -> ApiProblem:
    try:
        error = orjson.loads(content)["error"]
        code, message = str(error.get("code", "error")), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ApiProblem(status, "error", f"{service} answered {status}")
    extra = {k: v for k, v in error.items() if k not in ("code", "message", "field")}
    fields = error.get("fields")
    name = error.get("field") or (fields[0] if isinstance(fields, list) and fields else None)
    if isinstance(name, dict):
        name = name.get("field")
    return ApiProblem(status, code, message, name, extra)
