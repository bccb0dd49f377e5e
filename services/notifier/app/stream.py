"""The stream processor: a faust-streaming app over every context's topic.

One agent reads ``identity.events``, ``departments.events``, ``clients.events``,
``tickets.events`` and the notifier's own ``notifier.events`` (its
response-time warnings become notices like any other fact) and hands each
event to ``Processor.handle`` in order. It runs inside the service's process
and event loop, started and stopped with the service, in the consumer group
``<prefix>notifier.stream``. Its state lives in the kernel's store and read
models (inbox, directory), not in faust tables, so a restart, a new group or
a broker that lost its topics replays harmlessly.

Faust's defaults suit a big cluster; against the local Tansu broker they
mean a ~30 s first join and a fetch that idles 1.5 s before returning new
messages. So the group timeouts are seconds (``STREAM_SESSION_TIMEOUT_SECONDS``)
and the consumer's fetch wait is the broker's, like the kernel's consumers
(``shared.messaging.kafka_clients``: a long poll on Apache Kafka, 10 ms on Tansu); its
credentials are the service's too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
import structlog
from faust.transport.drivers import aiokafka as faust_kafka

from shared.domain.events import RecordedEvent
from shared.messaging.kafka import ensure_topic
from shared.messaging.kafka_clients import config_of, faust_options
from shared.observability import causation

log = structlog.get_logger(__name__)


class _ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # faust hard-codes 1500 ms; Tansu would hold each empty fetch that long.
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_wait_ms", 1500)
        return consumer


class _Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_kafka.Transport):
    Consumer = _Consumer


class _App(faust.App):
    fetch_wait_ms = 500  # the broker's (``NotifierStream.build``)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


STOP_SECONDS = 5.0
"""How long a stop waits for the faust app (uvicorn's graceful shutdown lasts 10 s)."""


class NotifierStream:
    """The faust app, built anew on each ``run`` (a restart starts from committed offsets)."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str,
        handle: Callable[[RecordedEvent], Awaitable[None]],
        session_timeout: float = 6.0,
        heartbeat: float = 0.5,
    ) -> None:
        self.name = group_id
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.group_id = group_id
        self.handle = handle
        self.session_timeout = session_timeout
        self.heartbeat = heartbeat
        self.ready = asyncio.Event()
        self.received = 0

    def build(self) -> faust.App:
        app = _App(
            self.group_id,
            **faust_options(self.bootstrap),  # the broker's URL and the service's credentials
            web_enabled=False,
            store="memory://",
            topic_disable_leader=True,
            topic_allow_declare=False,  # the kernel creates topics (ensure_topic)
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=self.session_timeout,
            broker_rebalance_timeout=self.session_timeout,
            broker_heartbeat_interval=self.heartbeat,
            broker_commit_interval=0.5,
            loghandlers=[],
        )
        app.fetch_wait_ms = config_of(self.bootstrap).fetch_wait_ms
        channel = app.topic(*self.topics, value_serializer="raw", key_serializer="raw")

        @app.agent(channel, concurrency=1)
        async def notify(stream: Any) -> None:
            async for message in stream:
                self.received += 1
                await self._handle_until_done(RecordedEvent.from_json(message))

        return app

    async def _handle_until_done(self, event: RecordedEvent) -> None:
        """At least once: an event that fails (database, clients service down) is tried again."""
        delay = 0.2
        while True:
            try:
                # What it appends and logs continues the event's correlation, caused by it.
                with causation.bound(causation.caused_by(event.event_id, event.correlation_id)):
                    await self.handle(event)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning(
                    "notifier.event_failed",
                    event_type=event.type, event_id=str(event.event_id),
                    error=f"{type(error).__name__}: {error}", retry_in=delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def run(self) -> None:
        for topic in self.topics:
            await ensure_topic(self.bootstrap, topic)
        app = self.build()
        try:
            await app.start()
            self.ready.set()
            log.info("notifier.stream_started", topics=self.topics, group=self.group_id)
            await asyncio.Event().wait()  # until the service stops (cancels this task)
        finally:
            self.ready.clear()
            await self._stop(app)

    async def _stop(self, app: faust.App) -> None:
        """Stop the app, but never wait on the broker longer than ``STOP_SECONDS``: its
        consumer leaves the group on the way, and a broker under load can take longer
        than a service's graceful shutdown lasts. The group then drops the member when
        its session times out, and the next start resumes from the committed offsets."""
        try:
            await asyncio.wait_for(app.stop(), STOP_SECONDS)
        except TimeoutError:
            log.warning("notifier.stream_stop_slow", group=self.group_id, seconds=STOP_SECONDS)
        except Exception as error:
            log.warning("notifier.stream_stop_failed", error=f"{type(error).__name__}: {error}")


def quiet_faust() -> None:
    """faust and mode log every rebalance at INFO; the service logs what matters."""
    for name in ("faust", "mode", "aiokafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
