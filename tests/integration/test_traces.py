"""OpenTelemetry traces over OTLP/HTTP to a real (local) receiver.

Identity and clients run with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at an
HTTP server in the test that decodes the protobuf export requests. Creating a
client is one trace across both services: the clients service's server span,
and identity's server span for the internal call it made, as its child. Events
handled from a topic are consumer spans. Both services run in this one test
process; each has its own provider, named after it, as in production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from services.clients.service import SPEC as CLIENTS
from services.identity.service import SPEC as IDENTITY
from shared.observability import telemetry
from shared.runtime.service import create_app
from shared.runtime.settings import ServiceSettings
from tests.conftest import fresh_database
from tests.http_util import eventually, serving
from tests.integration.test_clients import ADMIN_PASSWORD, client_body, login


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    service: str
    attributes: dict[str, Any]


def receiver(spans: list[ReceivedSpan]) -> FastAPI:
    """An OTLP/HTTP trace receiver keeping what it is sent."""
    app = FastAPI()

    @app.post("/v1/traces")
    async def export(request: Request) -> Response:
        sent = ExportTraceServiceRequest.FromString(await request.body())
        for resource_spans in sent.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            service=resource.get("service.name", ""),
                            attributes={
                                a.key: a.value.string_value or a.value.int_value
                                for a in span.attributes
                            },
                        )
                    )
        return Response(status_code=200, media_type="application/x-protobuf")

    return app


@pytest.fixture
async def traced(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], list[ReceivedSpan]]]:
    spans: list[ReceivedSpan] = []
    monkeypatch.setenv("ADMIN_PASSWORD", ADMIN_PASSWORD)
    telemetry.reset()
    async with (
        serving(receiver(spans)) as collector,
        fresh_database() as identity_db,
        fresh_database() as clients_db,
    ):

        def settings(url: str, var: str) -> ServiceSettings:
            return ServiceSettings(
                event_store_url=url, read_model_url=url, kafka_bootstrap_servers=kafka_bootstrap,
                topic_prefix=topic_prefix, trusted_proxies=["127.0.0.1/32"],
                var_dir=str(tmp_path / var), otel_exporter_otlp_endpoint=collector,
            )  # fmt: skip

        try:
            async with serving(create_app(IDENTITY, settings(identity_db, "i"))) as identity_base:
                monkeypatch.setenv("IDENTITY_URL", identity_base)
                async with (
                    serving(create_app(CLIENTS, settings(clients_db, "c"))) as clients_base,
                    httpx.AsyncClient(base_url=identity_base) as identity,
                    httpx.AsyncClient(base_url=clients_base, timeout=60) as clients,
                ):
                    admin = await login(identity, "admin", ADMIN_PASSWORD)
                    await eventually(
                        lambda: clients.get("/clients", headers=admin),
                        lambda r: r.status_code == 200,
                    )
                    yield clients, admin, spans
        finally:
            telemetry.reset()  # later tests in this process run without traces


async def test_one_trace_spans_both_services_of_a_request(
    traced: tuple[httpx.AsyncClient, dict[str, str], list[ReceivedSpan]],
) -> None:
    clients, admin, spans = traced
    correlation = "trace-me-0001"
    created = await clients.post(
        "/clients",
        json=client_body("traced-client"),
        headers={**admin, "x-correlation-id": correlation},
    )
    assert created.status_code == 201, created.text

    def server_spans() -> list[ReceivedSpan]:
        telemetry.flush()
        return [s for s in spans if s.kind == 2]  # SPAN_KIND_SERVER

    async def found() -> list[ReceivedSpan]:
        return server_spans()

    def tagged(got: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [s for s in got if s.attributes.get("correlation_id") == correlation]

    # Both services' server spans carry the correlation id: the header went along.
    await eventually(found, lambda got: {s.service for s in tagged(got)} == {"clients", "identity"})
    [request] = [s for s in tagged(server_spans()) if s.service == "clients"]
    assert request.name.startswith("POST")
    # Identity's span for the internal call is in the same trace, under the clients span.
    in_trace = {s.span_id: s for s in spans if s.trace_id == request.trace_id}
    internal = [s for s in in_trace.values() if s.kind == 2 and s is not request]
    assert internal and all(s.service == "identity" for s in internal), in_trace
    for span in internal:
        parent = span.parent_span_id
        while parent and parent != request.span_id:  # up through the send/receive spans
            parent = in_trace[parent].parent_span_id if parent in in_trace else ""
        assert parent == request.span_id

    # Handling events from topics: consumer spans (clients follows identity.events).
    async def consumer_spans() -> list[ReceivedSpan]:
        telemetry.flush()
        return [s for s in spans if s.kind == 5]  # SPAN_KIND_CONSUMER

    handled = await eventually(consumer_spans, bool)
    assert all(s.service == "clients" and s.name.startswith("handle ") for s in handled)
    assert all(s.attributes["event.type"] and s.attributes["messaging.message.id"] for s in handled)
