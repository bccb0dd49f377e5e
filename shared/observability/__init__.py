"""Observability: what every other layer reports through, importing nothing of the kernel.

* ``causation`` – correlation and causation ids that follow one request across services;
* ``logs`` – JSON logs carrying the service name and the correlation id;
* ``telemetry`` – OpenTelemetry spans when an OTLP endpoint is configured;
* ``supervision`` – background work retried with a growing pause, its problem text.
"""

from shared.observability.causation import (
    HEADER,
    HTTPX_HOOKS,
    MAX_HEADER,
    Cause,
    bound,
    caused_by,
    correlation_of,
    current,
    propagate,
)
from shared.observability.supervision import (
    FIRST_PAUSE,
    LONGEST_PAUSE,
    problem_text,
    retry_forever,
)
from shared.observability.telemetry import (
    HandledEvent,
    annotate_request,
    flush,
    handling,
    reset,
    tracer,
)

__all__ = [
    "FIRST_PAUSE",
    "HEADER",
    "HTTPX_HOOKS",
    "LONGEST_PAUSE",
    "MAX_HEADER",
    "Cause",
    "HandledEvent",
    "annotate_request",
    "bound",
    "caused_by",
    "correlation_of",
    "current",
    "flush",
    "handling",
    "problem_text",
    "propagate",
    "reset",
    "retry_forever",
    "tracer",
]
