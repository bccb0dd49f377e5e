"""Correlation and causation ids that follow one request across services.

One request to any service starts a *correlation*: its id comes from the
``x-correlation-id`` header (or is made up) and is bound, for the time of the
request, to

* every event the request appends (``correlation_id``; ``EventRegistry.encode``
  reads it from here),
* every log line (structlog context: ``correlation_id``),
* every call to another service (``propagate``, an httpx request hook:
  ``httpx.AsyncClient(event_hooks=HTTPX_HOOKS)``).

A consumer handling an event from a topic continues the event's correlation
(``caused_by``): what it appends gets the same ``correlation_id`` and the
handled event's id as ``causation_id``, and its log lines show both. So one
``correlation_id`` finds everything a client's click caused, in every service's
events and logs, and ``causation_id`` tells which event led to which.

An id in the header that is not a UUID is kept as given in logs and echoed
back; events, whose ids are UUIDs, get a UUID derived from it (always the same).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx
import opentelemetry.propagate
import structlog

HEADER = "x-correlation-id"
MAX_HEADER = 128  # a longer one is replaced, not echoed into every log line
_NAMESPACE = uuid.UUID("6f0f6a4e-1b53-4c8e-9d8e-3b1c2d4e5f60")


@dataclass(frozen=True, slots=True)
class Cause:
    """What the current work belongs to (``correlation_id``) and what caused it."""

    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    label: str = ""  # the correlation id as the caller wrote it (logs, headers)

    @property
    def header(self) -> str:
        return self.label or str(self.correlation_id)


_current: ContextVar[Cause | None] = ContextVar("cause", default=None)


def current() -> Cause | None:
    """The cause of the work at hand, or None outside any request or handled event."""
    return _current.get()


def correlation_of(header: str | None) -> Cause:
    """A request's cause from its ``x-correlation-id`` header (a new one if absent)."""
    if not header or len(header) > MAX_HEADER:
        return Cause(uuid.uuid4())
    try:
        return Cause(uuid.UUID(header), label=header)
    except ValueError:
        return Cause(uuid.uuid5(_NAMESPACE, header), label=header)


@contextlib.contextmanager
def bound(cause: Cause) -> Iterator[Cause]:
    """Make ``cause`` current (events, logs, outgoing calls) inside the block."""
    token = _current.set(cause)
    ids = {"correlation_id": cause.header}
    if cause.causation_id is not None:
        ids["causation_id"] = str(cause.causation_id)
    with structlog.contextvars.bound_contextvars(**ids):
        try:
            yield cause
        finally:
            _current.reset(token)


def caused_by(event_id: uuid.UUID, correlation_id: uuid.UUID | None) -> Cause:
    """The cause of handling an event: its correlation (or itself), caused by it."""
    return Cause(correlation_id or event_id, causation_id=event_id)


async def propagate(request: httpx.Request) -> None:
    """httpx request hook: a call made on behalf of a request carries its correlation
    (and, when traces are on, the trace context: ``traceparent``)."""
    cause = _current.get()
    if cause is not None and HEADER not in request.headers:
        request.headers[HEADER] = cause.header
    carrier: dict[str, str] = {}
    opentelemetry.propagate.inject(carrier)  # nothing without a recording span
    request.headers.update(carrier)


# ``httpx.AsyncClient(event_hooks=HTTPX_HOOKS)``: its calls carry the correlation id.
HTTPX_HOOKS: dict[str, list[Any]] = {"request": [propagate]}
