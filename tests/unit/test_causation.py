"""``causation``: one correlation id for events, logs and calls of one piece of work."""

from __future__ import annotations

import uuid

import httpx
import structlog

from shared.domain.events import DomainEvent, EventRegistry
from shared.observability import causation

registry = EventRegistry()


@registry.register
class NoteAdded(DomainEvent):
    event_type = "NoteAdded"
    text: str


def test_a_requests_header_becomes_the_correlation_of_its_events_and_logs() -> None:
    given = uuid.uuid4()
    with causation.bound(causation.correlation_of(str(given))):
        event = registry.encode(NoteAdded(text="hi"))
        assert structlog.contextvars.get_contextvars()["correlation_id"] == str(given)
    assert (event.correlation_id, event.causation_id) == (given, None)
    assert "correlation_id" not in structlog.contextvars.get_contextvars()
    assert registry.encode(NoteAdded(text="outside")).correlation_id is None


def test_a_header_that_is_no_uuid_is_kept_for_logs_and_gives_a_stable_uuid() -> None:
    first, again = causation.correlation_of("abc-123"), causation.correlation_of("abc-123")
    assert first.header == "abc-123" and first.correlation_id == again.correlation_id
    assert causation.correlation_of("x" * 500).header != "x" * 500  # not echoed
    assert (
        causation.correlation_of(None).correlation_id
        != causation.correlation_of(None).correlation_id
    )


def test_handling_an_event_continues_its_correlation_caused_by_it() -> None:
    handled, origin = uuid.uuid4(), uuid.uuid4()
    with causation.bound(causation.caused_by(handled, origin)):
        event = registry.encode(NoteAdded(text="reaction"))
        assert structlog.contextvars.get_contextvars()["causation_id"] == str(handled)
    assert (event.correlation_id, event.causation_id) == (origin, handled)
    # An event without a correlation starts one: its own id.
    with causation.bound(causation.caused_by(handled, None)):
        assert registry.encode(NoteAdded(text="x")).correlation_id == handled


async def test_calls_to_other_services_carry_the_correlation() -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-correlation-id"))
        return httpx.Response(204)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(answer), event_hooks=causation.HTTPX_HOOKS
    ) as http:
        await http.get("http://other/")
        with causation.bound(causation.correlation_of("req-7")):
            await http.get("http://other/")
    assert seen == [None, "req-7"]
