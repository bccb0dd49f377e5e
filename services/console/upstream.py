"""Calls to the five services' public APIs with the user's own token.

Rules it keeps:

* One ``httpx.AsyncClient`` for the process (keep-alive to each service),
  ``trust_env=False`` so a developer's HTTP proxy never sees these calls.
* The caller's address goes along as ``X-Forwarded-For``; the services believe
  it only when they list the console among ``TRUSTED_PROXIES`` (IP allow-lists
  and session binding then apply to the browser's address, not the console's).
* An answer that is not 2xx becomes ``ApiProblem`` with the API's error as it
  was sent (code, message, field, extras such as ``changes``); a service that
  does not answer becomes a 503 ``service_unavailable`` naming it. A 401 is
  ``SignInAgain`` (token expired or session ended), which pages turn into the
  login form, except ``unknown_principal``: a service whose copy of identity's
  facts has not caught up with a new account yet, a 503 to try again shortly.
* Tokens are never logged: the client logs nothing itself, and errors carry
  only the service's name and path.
* A session's ``/me`` and the support departments' names are asked for at most
  every few seconds (``services.console.recent``); any other call but a GET made
  with a token makes that token's ``/me`` forgotten once it has answered.
* Each call's time is noted in ``timings`` (a context variable the app's
  ``ServerTiming`` sets per request): service, path without query, ms; the
  answer's ``Server-Timing`` header lists them.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from services.console.recent import DEPARTMENTS_SECONDS, ME_SECONDS, token_key
from services.console.settings import ConsoleSettings
from shared.application.recent import Recent

SERVICES = ("identity", "departments", "tickets", "clients", "notifier")

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
    headers: httpx.Headers = field(default_factory=httpx.Headers)


class Upstream:
    """The services' APIs as one object; ``api.get("tickets", "/tickets", token=...)``."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.urls = {name: settings.upstream(name) for name in SERVICES}
        self.http = httpx.AsyncClient(timeout=settings.console_upstream_timeout, trust_env=False)
        self.recent_me: Recent[bytes, Any] = Recent(ME_SECONDS)
        self.recent_departments: Recent[bytes, Any] = Recent(DEPARTMENTS_SECONDS)

    async def close(self) -> None:
        await self.http.aclose()

    def url(self, service: str, path: str) -> str:
        return self.urls[service] + path

    def headers(self, token: str | None, address: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if address:
            headers["X-Forwarded-For"] = address
        return headers

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
        params: Any = None,
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
        params: Any,
    ) -> Answer:
        started = time.perf_counter()
        try:
            response = await self.http.request(
                method,
                self.url(service, path),
                json=json,
                params=params,
                headers=self.headers(token, address),
            )
        except httpx.HTTPError:
            raise ApiProblem(
                503, "service_unavailable", f"the {service} service does not answer"
            ) from None
        noted = timings.get()
        if noted is not None:
            noted.append((service, path, (time.perf_counter() - started) * 1000))
        total = response.headers.get("x-total-count")
        if response.is_success:
            # The services answer UTF-8 JSON; orjson reads it without httpx's charset guessing
            # and faster than the standard json (a queue page, 12 kB: 0.04 ms against 0.06).
            body = orjson.loads(response.content) if response.content else None
            return Answer(
                response.status_code, body, int(total) if total else None, response.headers
            )
        problem = _problem(service, response)
        if response.status_code == 401 and token:
            if problem.code == "unknown_principal":
                # A new account the service has not heard of yet (its access copy
                # follows identity's topic): the session is good, so the user
                # waits a moment instead of being signed out.
                raise ApiProblem(
                    503, "access_not_known_yet", f"the {service} service does not know you yet"
                )
            raise SignInAgain()
        raise problem


def _problem(service: str, response: httpx.Response) -> ApiProblem:
    try:
        error = response.json()["error"]
        code, message = str(error.get("code", "error")), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ApiProblem(
            response.status_code, "error", f"{service} answered {response.status_code}"
        )
    extra = {k: v for k, v in error.items() if k not in ("code", "message", "field")}
    fields = error.get("fields")
    name = error.get("field") or (fields[0] if isinstance(fields, list) and fields else None)
    if isinstance(name, dict):
        name = name.get("field")
    return ApiProblem(response.status_code, code, message, name, extra)
