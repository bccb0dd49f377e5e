"""The OpenAPI document says what a service really answers: the common errors, once.

FastAPI documents a route's own answer and a 422 in its own shape
(``{"detail": [...]}``), which is not the services' error format. Generated
clients and schemathesis then meet answers the document does not list. So
``common_responses`` rewrites every operation of a service's document, from
what the route depends on (FastAPI's dependency tree), with one ``Error``
schema (``{"error": {"code", "message", "field"?, "fields"?}}``, API.md):

* 401 and 403 when the route authorises its caller (``shared.http.api.require``,
  directly or through a service's own dependency; ``shared.http.internal.require_service``);
* 404 when its path names an entity (a path parameter);
* 409 for a command (POST, PUT, PATCH, DELETE): a version conflict, or a rule
  the current state breaks;
* 400 and 413 when it takes a body (a form that cannot be parsed; over the limit of
  ``shared.http.body_limit``);
* 422 when it takes parameters or a body, in the services' format (FastAPI's
  own ``HTTPValidationError`` is dropped);
* 503 with ``Retry-After`` when it waits for read models (``?min_position``,
  ``shared.http.api.caught_up``) or for another context's copy;
* 405 (``Allow`` names the methods) on every path: any other method.

What a route declares itself (``responses=`` on its decorator, ``error_responses``
for the services' format: a login's 401, 403 and 429, say) is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
                "fields": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
COMMANDS = frozenset({"post", "put", "patch", "delete"})
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

_WHY = {
    400: "a body that cannot be parsed",
    401: "no valid token or credentials (``WWW-Authenticate: Bearer``)",
    403: "the caller lacks the right, or the rule forbids it",
    404: "no such entity",
    405: "not a method of this path (``Allow`` names those that are)",
    409: "version conflict, or a rule the current state breaks",
    429: "too many attempts; retry after ``Retry-After`` seconds",
    413: "request body larger than the service takes",
    422: "invalid input; ``field`` names it",
    503: "read models or a copy not there yet; retry after ``Retry-After`` seconds",
}


def error_response(status: int, html: bool = False) -> dict[str, Any]:
    """One documented error answer in the services' format; ``html``: a page for people
    (the rating link's) answers its own refusals as a page too."""
    content: dict[str, Any] = {"application/json": {"schema": ERROR_REF}}
    if html:
        content["text/html"] = {"schema": {"type": "string"}}
    response: dict[str, Any] = {"description": _WHY.get(status, "error"), "content": content}
    if status in (503, 429):
        response["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    elif status == 405:
        response["headers"] = {"Allow": {"schema": {"type": "string"}, "required": True}}
    elif status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return response


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's own errors beyond the common ones."""
    return {status: error_response(status) for status in statuses}


def _params(dependant: Dependant) -> dict[str, int]:
    """How many path, query, header and body parameters the route and its dependencies take."""
    counts = {
        "path": len(dependant.path_params),
        "query": len(dependant.query_params),
        "header": len(dependant.header_params),
        "body": len(dependant.body_params),
    }
    for sub in dependant.dependencies:
        for kind, n in _params(sub).items():
            counts[kind] += n
    return counts


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def api_routes(
    routes: Iterable[BaseRoute], prefix: str = "", dependencies: tuple[Any, ...] = ()
) -> Iterator[tuple[str, APIRoute, tuple[Any, ...]]]:
    """(path, route, the include's dependencies) of every API route, through included
    routers (which this FastAPI keeps apart rather than copying their routes)."""
    for route in routes:
        included = getattr(route, "include_context", None)
        if included is not None:
            yield from api_routes(
                included.included_router.routes,
                prefix + included.prefix,
                dependencies + tuple(included.dependencies or ()),
            )
        elif isinstance(route, APIRoute):
            yield prefix + route.path_format, route, dependencies


def route_errors(route: APIRoute, around: tuple[Any, ...] = (), *, method: str) -> set[int]:
    """The error statuses ``route`` can answer to ``method``, from what it depends on
    (``around``: the dependencies of the routers it was included through)."""
    names = {getattr(call, "__qualname__", "") for call in _calls(route.dependant)}
    names |= {getattr(d.dependency, "__qualname__", "") for d in around}
    statuses: set[int] = set()
    if any(name.startswith(("require.", "require_service.")) for name in names):
        statuses |= {401, 403}
    # Parameters of the dependencies count too (``?min_position``, paging).
    flat = _params(route.dependant)
    if flat["path"]:
        statuses.add(404)
    if method in COMMANDS:
        statuses.add(409)
    has_body = bool(flat["body"]) or method in COMMANDS
    if has_body:
        statuses |= {400, 413}  # 400: a form or multipart body that cannot be parsed
    if has_body or flat["query"] or flat["path"] or flat["header"]:
        statuses.add(422)
    if any(name == "caught_up" for name in names) or method in COMMANDS:
        # A command may wait, bounded, for another context's copy (issue 17, part 7).
        statuses.add(503)
    return statuses


def common_responses(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` that documents the common errors of every operation (cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            description=app.description,
            routes=app.routes,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas["Error"] = ERROR_SCHEMA
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        routes = {
            (path, method.lower()): (route, around)
            for path, route, around in api_routes(app.routes)
            for method in route.methods or ()
        }
        for path, item in document.get("paths", {}).items():
            for method in METHODS:
                operation = item.get(method)
                found = routes.get((path, method))
                if operation is None or found is None:
                    continue
                responses = operation.setdefault("responses", {})
                statuses = route_errors(*found, method=method) | {405}
                if "422" in responses:  # FastAPI's, in its own shape
                    statuses.add(422)
                html = "html" in str(getattr(found[0].response_class, "media_type", ""))
                for status in sorted(statuses):
                    if status == 422 or str(status) not in responses:
                        # FastAPI's 422 names its own schema: the services answer theirs.
                        responses[str(status)] = error_response(status, html)
        app.openapi_schema = document
        return document

    return openapi
