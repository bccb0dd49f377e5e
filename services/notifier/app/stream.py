"""The stream processor: a faust-streaming app over every context's topic.

One agent reads ``identity.events``, ``departments.events``, ``clients.events``,
``tickets.events`` and the notifier's own ``notifier.events`` (its
response-time warnings become notices like any other fact) and hands them, in
order, to ``Processor.handle_batch`` in batches, as the kernel's consumers take
theirs: what has arrived, up to ``BATCH_MAX`` facts, waiting at most
``BATCH_WITHIN`` for more (faust's ``take_events``; its offsets are acknowledged
once the batch is handled). A batch that fails is taken again one fact at a
time under the rules below (as the kernel's consumer takes a held partition),
so the failing fact is the one retried, counted and parked; the facts of the
batch handled before it are skipped by the inbox. It runs inside the service's process
and event loop, started and stopped with the service, in the consumer group
``<prefix>notifier.stream``. Its state lives in the kernel's store and read
models (inbox, directory), not in faust tables, so a restart, a new group or
a broker that lost its topics replays harmlessly.

Faust's defaults suit a big cluster; against the local Tansu broker they
mean a ~30 s first join and a fetch that idles 1.5 s before returning new
messages. So the group timeouts are seconds (``STREAM_SESSION_TIMEOUT_SECONDS``)
and the consumer's fetch wait is the broker's, like the kernel's consumers
(``shared.messaging.kafka_clients``: a long poll on Apache Kafka, 10 ms on Tansu and
100 once the topics are quiet); its credentials are the service's too.

A fact that fails is tried again after a pause that doubles (the kernel's
supervision pauses); once it has failed ``max_failures`` times in a row
(``CONSUMER_MAX_FAILURES``), or cannot even be read as an event, it is parked in
the kernel's ``dead_letters`` table through ``shared.messaging.DeadLetters``, as
the kernel's consumers park theirs, and the stream goes on: one poison fact must
not stall every later one of its partition. The same metrics
(``dead_letters_total``, ``dead_letters_parked``), the ``/ready`` problem
(``dead-letters:stream``) and ``python -m shared.cli dead-letters list|retry|drop
notifier`` apply; a retry asked there is read from the broker and handed to the
processor again by ``watch_dead_letters`` (the processor's inbox makes a second
application harmless). Parking needs the database: while it is down too, the
fact is tried again rather than lost. A failure of what the fact needs rather
than of the fact (``TRANSIENT``: the clients or tickets service not answering,
the database away) does not count towards parking: the fact waits, as long as
it takes, so that a service restarting never sends notices to the dead letters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
import sqlalchemy.exc
import structlog
from faust.transport.drivers import aiokafka as faust_kafka

from services.notifier.app.ports import Unavailable
from shared.domain.events import RecordedEvent
from shared.messaging import (
    DEAD_LETTER_POLL,
    DEAD_LETTER_PROBLEM,
    MAX_FAILURES,
    DeadLetters,
    failure_reason,
)
from shared.messaging.kafka import ensure_topic
from shared.messaging.kafka_clients import config_of, faust_options, pace_fetches
from shared.observability import causation
from shared.observability.supervision import FIRST_PAUSE, LONGEST_PAUSE
from shared.readmodel.database import ReadModelDB

# What a fact needs being away: retried for as long as it takes, never parked.
TRANSIENT: tuple[type[BaseException], ...] = (
    Unavailable,  # the clients or tickets service
    OSError,
    TimeoutError,
    sqlalchemy.exc.OperationalError,  # the database
    sqlalchemy.exc.InterfaceError,
)


def _transient(error: BaseException) -> bool:
    return isinstance(error, TRANSIENT)


log = structlog.get_logger(__name__)


class _ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # faust hard-codes 1500 ms; Tansu would hold each empty fetch that long.
        consumer._fetch_max_wait_ms = config_of(getattr(self.app, "bootstrap", "")).fetch_wait_ms
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        # Quiet topics: the kernel consumers' longer wait (shared.messaging.kafka_clients).
        pace_fetches(self._consumer, getattr(self.app, "bootstrap", ""))


class _Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_kafka.Transport):
    Consumer = _Consumer


class _App(faust.App):
    # The broker's address with its client configuration, fetch wait included (``build``).
    bootstrap = ""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


BATCH_MAX = 200
"""Facts handed to the processor at once, at most."""
BATCH_WITHIN = 0.01
"""Seconds a batch waits to fill: the latency a fact alone gains (faust's timer wakes
this often while idle)."""

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
        dead_letters: DeadLetters | None = None,
        first_pause: float = FIRST_PAUSE,
        handle_batch: Callable[[Sequence[RecordedEvent]], Awaitable[None]] | None = None,
    ) -> None:
        self.name = group_id
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.group_id = group_id
        self.handle = handle
        # None: one fact at a time (``handle``); given, batches, each fact of a failed
        # batch then through ``handle``.
        self.handle_batch = handle_batch
        self.session_timeout = session_timeout
        self.heartbeat = heartbeat
        self.ready = asyncio.Event()
        self.received = 0
        self.first_pause = first_pause
        # Where a fact that keeps failing goes (``dead_letters(...)``); None: nowhere, it
        # is tried for ever (a stream without a database, in tests of the transport).
        self.dead_letters = dead_letters

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
        app.bootstrap = self.bootstrap
        channel = app.topic(*self.topics, value_serializer="raw", key_serializer="raw")

        @app.agent(channel, concurrency=1)
        async def notify(stream: Any) -> None:
            if self.handle_batch is None:
                async for record in stream.events():
                    self.received += 1
                    await self._handle_or_park(record.message)
                return
            async for records in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
                self.received += len(records)
                await self._handle_batch([record.message for record in records])

        return app

    async def _handle_batch(self, messages: Sequence[Any]) -> None:
        """The batch at once; if that fails, each of its facts under ``_handle_or_park``
        (those the batch handled are skipped there by the processor's inbox)."""
        assert self.handle_batch is not None
        try:
            events = [RecordedEvent.from_json(message.value) for message in messages]
            await self.handle_batch(events)
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if len(messages) > 1:
                log.info("notifier.batch_failed", size=len(messages), error=failure_reason(error))
        for message in messages:
            await self._handle_or_park(message)

    async def _handle_or_park(self, message: Any) -> None:
        """At least once: a fact that fails is tried again, ``max_failures`` times in a row,
        then parked; one that is no event, parked at once; while what it needs is away
        (``TRANSIENT``), for as long as it takes."""
        delay = self.first_pause
        failures = 0
        failed: Exception
        while True:
            try:
                event = RecordedEvent.from_json(message.value)
            except Exception as error:
                failures = self._max_failures  # no retry reads it better
                failed = error
            else:
                try:
                    # What it appends and logs continues the event's correlation, caused by it.
                    with causation.bound(causation.caused_by(event.event_id, event.correlation_id)):
                        await self.handle(event)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    # Only a failure of the fact itself counts towards parking it; one
                    # of what it needs (a service, the database) is waited out.
                    failures += 0 if _transient(error) else 1
                    failed = error
            if failures >= self._max_failures and await self._park(message, failed):
                return
            log.warning(
                "notifier.event_failed", topic=message.topic, partition=message.partition,
                offset=message.offset, error=failure_reason(failed), failures=failures,
                retry_in=delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, LONGEST_PAUSE)

    @property
    def _max_failures(self) -> int:
        return self.dead_letters.max_failures if self.dead_letters is not None else MAX_FAILURES

    async def _park(self, message: Any, error: Exception) -> bool:
        """Park the fact in ``dead_letters``; False if even that failed, or there is no
        table to park in (tried again later)."""
        if self.dead_letters is None:
            return False
        try:
            await self.dead_letters.park(
                message.topic, message.partition, message.offset, message.key,
                message.value, error,
            )  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as failure:
            log.error("notifier.park_failed", error=failure_reason(failure))
            return False
        return True

    async def watch_dead_letters(self) -> None:
        """Count the parked facts (gauge, ``/ready`` problem) and hand those an operator
        asked a retry for to the processor again (a task of the service)."""

        async def reapply(_conn: Any, event: RecordedEvent, _topic: str) -> None:
            # The processor keeps its own transactions and inbox, not the caller's.
            with causation.bound(causation.caused_by(event.event_id, event.correlation_id)):
                await self.handle(event)

        while self.dead_letters is not None:
            await self.dead_letters.look(reapply)
            await asyncio.sleep(DEAD_LETTER_POLL)

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


def dead_letters(
    db: ReadModelDB, bootstrap: str, group_id: str, problems: dict[str, str], max_failures: int
) -> DeadLetters:
    """The stream's parked facts, in the kernel's table under its group; its ``/ready``
    problem has its own key, beside the one a service's kernel consumer reports under."""
    return DeadLetters(
        db, bootstrap, group_id, problems, max_failures, f"{DEAD_LETTER_PROBLEM}:stream"
    )


def quiet_faust() -> None:
    """faust and mode log every rebalance at INFO; the service logs what matters."""
    for name in ("faust", "mode", "aiokafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
