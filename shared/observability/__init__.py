"""Observability: what every other layer reports through, importing nothing of the kernel.

* ``causation`` – correlation and causation ids that follow one request across services;
* ``logs`` – JSON logs carrying the service name and the correlation id;
* ``telemetry`` – OpenTelemetry spans when an OTLP endpoint is configured;
* ``supervision`` – background work retried with a growing pause, its problem text.
"""

from shared.observability.causation import (
    HEADER,
    MAX_HEADER,
    Cause,
    current,
    correlation_of,
    bound,
    caused_by,
    propagate,
    HTTPX_HOOKS,
)
from shared.observability.supervision import (
    FIRST_PAUSE,
    LONGEST_PAUSE,
    problem_text,
    retry_forever,
)
from shared.observability.telemetry import (
    HandledEvent,
    tracer,
    flush,
    reset,
    handling,
    annotate_request,
)

__all__ = [
    "Cause",
    "FIRST_PAUSE",
    "HEADER",
    "HTTPX_HOOKS",
    "HandledEvent",
    "LONGEST_PAUSE",
    "MAX_HEADER",
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
