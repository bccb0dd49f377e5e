"""OpenTelemetry traces, when an OTLP endpoint is configured (else nothing at all).

``OTEL_EXPORTER_OTLP_ENDPOINT`` (for example ``http://otel-collector:4318``)
turns them on for a service: each HTTP request is a server span (ASGI
instrumentation), each event a consumer hands to a handler is a span of its own,
and calls to other services carry the W3C ``traceparent`` header, so one trace
spans the services a request went through. Spans carry the correlation id
(``shared.observability.causation``), which also follows the request through the topics.
Spans leave in batches over OTLP/HTTP (protobuf) to ``<endpoint>/v1/traces``.

Without the variable no provider, exporter or middleware is installed: the
API's default tracer does nothing and costs next to nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from shared.observability import causation


class HandledEvent(Protocol):
    """What a span needs of an event (``RecordedEvent`` has it; observability sits below it)."""

    @property
    def event_id(self) -> uuid.UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def stream(self) -> str: ...
    @property
    def correlation_id(self) -> uuid.UUID | None: ...


# Each service's provider once configured (kept here, not set as OpenTelemetry's
# global, which can be set once only: a test process runs several services).
_providers: dict[str, TracerProvider] = {}


def configure(service: str, endpoint: str | None) -> TracerProvider | None:
    """Send ``service``'s spans to ``endpoint`` (OTLP/HTTP); None when not configured."""
    if not endpoint:
        return None
    if service not in _providers:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        _providers[service] = provider
    return _providers[service]


def tracer(service: str) -> trace.Tracer:
    """The service's tracer, or one that does nothing when traces are off."""
    provider = _providers.get(service)
    return provider.get_tracer(f"{service}") if provider is not None else trace.NoOpTracer()


def flush(service: str | None = None) -> None:
    """Send the spans still buffered (a service stopping; tests)."""
    for name, provider in _providers.items():
        if service in (None, name):
            provider.force_flush(timeout_millis=5000)


def reset() -> None:
    """Send what is buffered and forget every provider (tests)."""
    for provider in _providers.values():
        provider.shutdown()
    _providers.clear()


@contextmanager
def handling(tracer: trace.Tracer, consumer: str, event: HandledEvent) -> Iterator[None]:
    """A span for handling one event from a topic (no-op when traces are off)."""
    attributes = {
        "messaging.consumer.group.name": consumer,
        "messaging.message.id": str(event.event_id),
        "event.type": event.type,
        "event.stream": event.stream,
    }
    if event.correlation_id is not None:
        attributes["correlation_id"] = str(event.correlation_id)
    with tracer.start_as_current_span(
        f"handle {event.type}", kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield


def annotate_request() -> None:
    """Put the request's correlation id on the current (server) span."""
    cause = causation.current()
    span = trace.get_current_span()
    if cause is not None and span.is_recording():
        span.set_attribute("correlation_id", cause.header)
