"""The notifier's stream processor stops within a bound, whatever the broker does."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.notifier.app import stream as stream_module
from services.notifier.app.stream import NotifierStream
from shared.domain.events import RecordedEvent


class _StuckApp:
    """A faust app whose stop waits forever (a broker that never answers the leave)."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await asyncio.Event().wait()


async def _ignore(event: RecordedEvent) -> None:
    return None


async def test_a_stop_does_not_wait_on_a_broker_that_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream_module, "STOP_SECONDS", 0.2)
    stream = NotifierStream("127.0.0.1:9", [], "notifier.stream", _ignore)
    monkeypatch.setattr(stream, "build", _StuckApp)
    running = asyncio.create_task(stream.run())
    await asyncio.wait_for(stream.ready.wait(), 5)
    running.cancel()
    began = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert time.monotonic() - began < 2  # the service's stop goes on
    assert not stream.ready.is_set()
