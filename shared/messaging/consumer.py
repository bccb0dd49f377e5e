"""Consuming other contexts' topics, each event handled once.

Kafka delivers at least once (and the embedded broker may deliver a whole log
again after a restart). The handler's changes and the event id go into the
inbox table in one transaction, so a redelivered event is recognised and
skipped; offsets are committed to Kafka only after that transaction.

One consumer (one group member, one fetch loop) serves all of a service's
subscriptions: each is a *route* (its own inbox name, topics and handler), and
messages go to the routes of the topic they came from. On Tansu each idle
consumer costs a fetch every few milliseconds (``shared.messaging.kafka_clients``), so a
service keeps one, not one per subscription.

A batch that fails (a handler raises, a message cannot be read) holds back only
its own partition: the consumer rewinds that partition to the batch's first
message, pauses it, and retries it after a pause that doubles up to ten
seconds, while every other partition and topic goes on. Offsets never move
past an unhandled message. ``problems`` (the service's, shown by ``/ready``)
names the partition until it gets through.

A fact that keeps failing is parked rather than retried for ever (a poison
fact would otherwise stall every later fact of its partition). After a failed
batch, the partition is taken one message at a time, so the failing fact is
known; once it has failed ``max_failures`` times in a row (``CONSUMER_MAX_FAILURES``,
default 5), one transaction records it in ``dead_letters`` (topic, partition,
offset, key, event id and type, the reason without quoted values) and moves the
partition's offset past it, and the consumer goes on. While any fact of its
group is parked, ``problems`` says so (``/ready`` shows it; the service stays
ready: the rest of its facts apply). ``python -m shared.cli dead-letters
retry`` marks a parked fact, and the consumer (which has the handlers) reads it
from the broker again and applies it, removing it from the table in the same
transaction; a fact that fails again stays parked with the new reason.
``drop`` gives up on it (the row stays, marked, as a record). The failure
counts live in memory: a restarted consumer counts again from zero. The table,
its metrics, the problem and the retries are ``DeadLetters``'s, one per group,
which the notifier's faust stream uses as well (its own problem key).

Where a consumer stands is kept twice: in Kafka (committed after each batch,
for tools that show a group's lag) and in the read-model database, in the
batch's own transaction (``consumer_offsets``, per group and partition). A
member given a partition resumes from the database's offset: if Kafka forgot
the group's offsets (a group idle past the broker's ``offsets.retention.minutes``,
7 days by default), the consumer does not read its topics again from the start.

The inbox keeps an event id for a retention (``inbox_retention_days``, default
14), then ``prune_inbox`` removes it. What Kafka redelivers is recent: a batch
whose commit a crash or a rebalance cut off, or what a relay published again
after a crash between the broker's acknowledgement and its checkpoint.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from opentelemetry import trace
from prometheus_client import Counter, Gauge
from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import RecordedEvent
from shared.messaging.kafka import ensure_topic, message_at, messages_at
from shared.messaging.kafka_clients import consumer_options, pace_fetches
from shared.observability import causation, telemetry
from shared.observability.supervision import FIRST_PAUSE, LONGEST_PAUSE
from shared.readmodel.database import (
    ReadModelDB,
    consumer_offsets,
    dead_letters,
    dialect_insert,
    inbox,
)

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncConnection, RecordedEvent], Awaitable[None]]

CONSUMED = Counter("consumer_events_total", "Events taken from topics", ["consumer", "outcome"])
INBOX_PRUNED = Counter("inbox_pruned_total", "Inbox entries removed after their retention")
PRUNE_CHUNK = 5000  # entries per transaction: a prune never holds many row locks for long
PRUNE_EVERY = 3600.0  # seconds between two prunes of a running service
CONSUMER_LAG = Gauge(
    "consumer_lag_messages", "Messages on the broker not yet taken, per group", ["group", "topic"]
)
DEAD_LETTERED = Counter(
    "dead_letters_total", "Facts a consumer gave up on and parked in dead_letters", ["group"]
)
DEAD_LETTERS_PARKED = Gauge(
    "dead_letters_parked", "Facts of a group parked in dead_letters now", ["group"]
)
MAX_FAILURES = 5  # failures of one fact in a row before it is parked
DEAD_LETTER_POLL = 2.0  # seconds between two looks at dead_letters (retries asked, count)
DEAD_LETTER_PROBLEM = "dead-letters"  # the key under ``problems`` while facts are parked
REASON_MAX = 500


@dataclass(frozen=True)
class Route:
    """A subscription: the events of ``topics`` go to ``handler``, once per ``inbox`` name."""

    inbox: str
    topics: tuple[str, ...]
    handler: Handler


class InboxConsumer:
    """A Kafka consumer group member that hands each event to its route's handler once."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        topics: Sequence[str],
        db: ReadModelDB,
        handler: Handler,
        max_records: int = 500,
        group_id: str | None = None,
        problems: dict[str, str] | None = None,
        max_failures: int = MAX_FAILURES,
    ) -> None:
        self.name = name  # the first route's inbox name
        self.group_id = group_id or name
        self.bootstrap = bootstrap
        self.db = db
        self.max_records = max_records
        self.max_failures = max_failures
        self.routes: list[Route] = []
        self.handled = 0
        self.skipped = 0
        self.ready = asyncio.Event()
        self.tracer: trace.Tracer = trace.NoOpTracer()  # the service's, when traces are on
        self.problems = problems if problems is not None else {}
        self.dead_letters = DeadLetters(db, bootstrap, self.group_id, self.problems, max_failures)
        self.add_route(name, topics, handler)

    def add_route(self, inbox: str, topics: Sequence[str], handler: Handler) -> None:
        """Also hand the events of ``topics`` to ``handler`` (before ``run``)."""
        self.routes.append(Route(inbox, tuple(topics), handler))

    @property
    def topics(self) -> list[str]:
        return sorted({topic for route in self.routes for topic in route.topics})

    async def run(self) -> None:
        for topic in self.topics:
            await ensure_topic(self.bootstrap, topic)
        consumer = AIOKafkaConsumer(
            # The broker's fetch wait (shared.messaging.kafka_clients): a long poll on Apache
            # Kafka, which answers as soon as a message arrives; 10 ms on Tansu, 100 once quiet.
            **consumer_options(self.bootstrap),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        held = _HeldPartitions(consumer, self.problems)
        try:
            await consumer.start()  # inside the try: a stop during start-up still closes it
            pace_fetches(consumer, self.bootstrap)
            consumer.subscribe(self.topics, listener=_ResumeFromDatabase(self, consumer))
            self.ready.set()
            next_look = 0.0
            while True:
                held.resume_due()
                batches = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
                for tp, messages in batches.items():
                    await self._take(tp, messages, held)
                if batches:
                    await consumer.commit()
                await self._measure_lag(consumer)
                if time.monotonic() >= next_look:
                    await self.look_at_dead_letters()
                    next_look = time.monotonic() + DEAD_LETTER_POLL
        finally:
            self.ready.clear()
            await consumer.stop()

    async def _take(
        self,
        tp: TopicPartition,
        messages: list[ConsumerRecord[bytes, bytes]],
        held: _HeldPartitions,
    ) -> None:
        """Hand one partition's messages to the routes: as one batch, or, while the
        partition is held after a failure, one at a time, so that the failing fact is
        known, counted and, after ``max_failures``, parked."""
        chunks = [[m] for m in messages] if held.is_held(tp) else [messages]
        for chunk in chunks:
            try:
                events = [RecordedEvent.from_json(m.value) for m in chunk]
                await self.handle(events, tp.topic, (tp.partition, chunk[-1].offset + 1))
            except Exception as exc:
                if len(chunk) == 1 and held.failed(tp, chunk[0].offset) >= self.max_failures:
                    await self._park(tp, chunk[0], exc)
                    continue
                held.hold(tp, chunk[0].offset, exc)
                return
        held.through(tp)

    async def _park(
        self, tp: TopicPartition, message: ConsumerRecord[bytes, bytes], error: Exception
    ) -> None:
        """Record ``message`` in ``dead_letters`` and move the partition past it, in one
        transaction (a crash in between neither loses nor parks it twice)."""

        async def move_past(conn: AsyncConnection, event: RecordedEvent | None) -> None:
            last = str(event.event_id) if event is not None else None
            await self._store_offset(conn, tp.topic, tp.partition, message.offset + 1, last)

        await self.dead_letters.park(
            tp.topic, tp.partition, message.offset, message.key, message.value, error, move_past
        )

    async def look_at_dead_letters(self, retry: bool = True) -> None:
        """Apply again the parked facts a retry was asked for (with ``retry``), then
        count what stays parked: the gauge and the ``problems`` entry follow it."""

        async def reapply(conn: AsyncConnection, event: RecordedEvent, topic: str) -> None:
            await self._apply(conn, [event], topic)

        await self.dead_letters.look(reapply if retry else None)

    @property
    def parked(self) -> int:
        """This group's facts in dead_letters, as last counted."""
        return self.dead_letters.parked

    @property
    def retried(self) -> int:
        """Parked facts applied again on request."""
        return self.dead_letters.retried

    async def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Messages on the broker this consumer has not taken yet, per topic."""
        behind: dict[str, int] = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)  # None until a fetch of tp came back
            if highwater is None:
                continue
            position = await consumer.position(tp)
            behind[tp.topic] = behind.get(tp.topic, 0) + max(0, highwater - position)
        for topic, lag in behind.items():
            CONSUMER_LAG.labels(self.group_id, topic).set(lag)

    async def stored_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The next offsets this group's handled batches left in the database."""
        return await trusted_offsets(self.db, self.bootstrap, self.group_id, partitions)

    async def handle(
        self,
        events: list[RecordedEvent],
        topic: str | None = None,
        offset: tuple[int, int] | None = None,
    ) -> None:
        """Apply a batch of one topic in one transaction, skipping events already in the inbox.

        ``topic`` picks the routes (None: the first route's). ``offset`` is the
        batch's (partition, next offset), stored in the same transaction.
        """
        if not events:
            return
        async with self.db.transaction() as conn:
            if topic is not None and offset is not None:
                await self._store_offset(conn, topic, *offset, str(events[-1].event_id))
            await self._apply(conn, events, topic)

    async def _apply(
        self, conn: AsyncConnection, events: list[RecordedEvent], topic: str | None
    ) -> None:
        """The routes of ``topic`` (None: the first route) apply ``events`` in ``conn``."""
        routes = (
            [r for r in self.routes if topic in r.topics] if topic is not None else self.routes[:1]
        )
        for route in routes:
            for event in events:
                marked = await conn.execute(
                    self.db.insert_ignoring_duplicates(
                        inbox, consumer=route.inbox, event_id=str(event.event_id)
                    )
                )
                if marked.rowcount == 0:
                    self.skipped += 1
                    CONSUMED.labels(route.inbox, "duplicate").inc()
                    continue
                cause = causation.caused_by(event.event_id, event.correlation_id)
                with (
                    causation.bound(cause),
                    telemetry.handling(self.tracer, route.inbox, event),
                ):
                    await route.handler(conn, event)
                self.handled += 1
                CONSUMED.labels(route.inbox, "handled").inc()

    async def _store_offset(
        self,
        conn: AsyncConnection,
        topic: str,
        partition: int,
        next_offset: int,
        last: str | None,
    ) -> None:
        """One upsert. Only forward: a member that lost the partition in a rebalance
        and still finishes a batch never moves the new owner's offset back."""
        row = dialect_insert(self.db.dialect, consumer_offsets).values(
            group_id=self.group_id,
            topic=topic,
            partition=partition,
            next_offset=next_offset,
            last_event_id=last,
        )
        await conn.execute(
            row.on_conflict_do_update(
                index_elements=[
                    consumer_offsets.c.group_id,
                    consumer_offsets.c.topic,
                    consumer_offsets.c.partition,
                ],
                set_={"next_offset": row.excluded.next_offset, "last_event_id": last},
                where=consumer_offsets.c.next_offset < row.excluded.next_offset,
            )
        )


Reapply = Callable[[AsyncConnection, RecordedEvent, str], Awaitable[None]]
"""Apply a parked fact again (connection, event, topic): in the connection's transaction,
which also removes it from the table, or, for a handler with its own transactions and
inbox (the notifier's stream), in those."""


class DeadLetters:
    """One consumer group's parked facts: parking one, counting them (the gauge and the
    ``problems`` entry), and applying again those an operator asked a retry for.

    Every consumer that gives up on a fact goes through here (the kernel's
    ``InboxConsumer``, the notifier's faust stream), so ``dead_letters``, its metrics,
    ``/ready``'s problem and ``shared.cli dead-letters`` mean the same for all of them.
    Rules kept: the row says where the fact is and why it failed, never its content
    (the topic keeps that, and it may hold personal data); the reason is scrubbed of
    quoted values (``failure_reason``); a fact is parked once per group and place.
    """

    def __init__(
        self,
        db: ReadModelDB,
        bootstrap: str,
        group_id: str,
        problems: dict[str, str],
        max_failures: int = MAX_FAILURES,
        problem: str = DEAD_LETTER_PROBLEM,
    ) -> None:
        self.db = db
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.problems = problems
        self.max_failures = max_failures
        self.problem = problem  # the key under ``problems``: one per group of a service
        self.parked = 0  # this group's facts in dead_letters, as last counted
        self.retried = 0  # parked facts applied again on request

    async def park(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: BaseException,
        also: Callable[[AsyncConnection, RecordedEvent | None], Awaitable[None]] | None = None,
    ) -> None:
        """Record the message at ``offset`` in ``dead_letters`` (with ``also``'s changes, the
        consumer's offset say, in the same transaction), count and log it."""
        try:
            event: RecordedEvent | None = RecordedEvent.from_json(value or b"")
        except Exception:
            event = None  # not even an envelope: parked by its place alone
        reason = failure_reason(error)
        async with self.db.transaction() as conn:
            if also is not None:
                await also(conn, event)
            await conn.execute(
                self.db.insert_ignoring_duplicates(
                    dead_letters,
                    group_id=self.group_id,
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=_key_text(key),
                    event_id=str(event.event_id) if event is not None else None,
                    event_type=event.type[:200] if event is not None else None,
                    reason=reason,
                    failures=self.max_failures,
                    parked_at=datetime.now(UTC),
                )
            )
        DEAD_LETTERED.labels(self.group_id).inc()
        log.error(
            "consumer.fact_parked",
            group=self.group_id, topic=topic, partition=partition, offset=offset,
            event_type=event.type if event is not None else None, reason=reason,
            failures=self.max_failures,
        )  # fmt: skip
        await self.look(None)

    async def look(self, reapply: Reapply | None) -> None:
        """Apply again, with ``reapply``, the parked facts a retry was asked for, then
        count what stays parked: the gauge and the ``problems`` entry follow it."""
        if reapply is not None:
            async with self.db.reading() as conn:
                asked = (
                    await conn.execute(
                        select(dead_letters).where(
                            dead_letters.c.group_id == self.group_id,
                            dead_letters.c.retry_requested_at.is_not(None),
                            dead_letters.c.dropped_at.is_(None),
                        )
                    )
                ).all()
            for row in asked:
                await self._retry(row._mapping, reapply)
        async with self.db.reading() as conn:
            parked = (
                await conn.execute(
                    select(func.count())
                    .select_from(dead_letters)
                    .where(
                        dead_letters.c.group_id == self.group_id,
                        dead_letters.c.dropped_at.is_(None),
                    )
                )
            ).scalar_one()
        self.parked = int(parked)
        DEAD_LETTERS_PARKED.labels(self.group_id).set(self.parked)
        if self.parked:
            self.problems[self.problem] = (
                f"{self.parked} fact(s) parked after failing {self.max_failures} times: "
                "python -m shared.cli dead-letters list SERVICE"
            )
        else:
            self.problems.pop(self.problem, None)

    async def _retry(self, row: Any, reapply: Reapply) -> None:
        """Apply a parked fact again, read from the broker; on success it leaves the
        table in the same transaction, on failure it stays with the new reason."""
        topic, partition, offset = row["topic"], row["partition"], row["offset"]
        try:
            message = await message_at(self.bootstrap, topic, partition, offset)
            if message is None:
                raise LookupError(f"the broker no longer has {topic}[{partition}] at {offset}")
            event = RecordedEvent.from_json(message.value)
            async with self.db.transaction() as conn:
                await reapply(conn, event, topic)
                await conn.execute(delete(dead_letters).where(dead_letters.c.id == row["id"]))
        except Exception as exc:
            reason = failure_reason(exc)
            async with self.db.transaction() as conn:
                await conn.execute(
                    update(dead_letters)
                    .where(dead_letters.c.id == row["id"])
                    .values(
                        reason=reason,
                        failures=dead_letters.c.failures + 1,
                        retry_requested_at=None,
                    )
                )
            log.error(
                "consumer.retry_failed", group=self.group_id, dead_letter=row["id"],
                topic=topic, partition=partition, offset=offset, reason=reason,
            )  # fmt: skip
            return
        self.retried += 1
        log.info(
            "consumer.retried", group=self.group_id, dead_letter=row["id"],
            topic=topic, partition=partition, offset=offset, event_type=event.type,
        )  # fmt: skip


class _ResumeFromDatabase(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions given to this member start at the database's offsets, where known."""

    def __init__(self, owner: InboxConsumer, consumer: AIOKafkaConsumer) -> None:
        self.owner = owner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # The new partitions are fetched from as soon as Kafka's offsets arrive, while
        # this still reads the database: paused before the first await, none of their
        # messages comes out of ``getmany`` before the seek.
        partitions = list(assigned)
        self.consumer.pause(*partitions)
        try:
            for tp, offset in (await self.owner.stored_offsets(partitions)).items():
                self.consumer.seek(tp, offset)
        finally:
            self.consumer.resume(*partitions)


class _HeldPartitions:
    """The partitions whose last batch failed: rewound, paused, resumed after a pause;
    and, per partition, how often in a row its first unhandled fact failed alone."""

    def __init__(self, consumer: AIOKafkaConsumer, problems: dict[str, str]) -> None:
        self.consumer = consumer
        self.problems = problems
        self.until: dict[TopicPartition, float] = {}
        self.pauses: dict[TopicPartition, float] = {}
        self.failures: dict[TopicPartition, tuple[int, int]] = {}  # (offset, times)

    def is_held(self, tp: TopicPartition) -> bool:
        """A failure since the partition last got through: take it one fact at a time."""
        return tp in self.pauses

    def failed(self, tp: TopicPartition, offset: int) -> int:
        """Count one more failure of the fact at ``offset`` alone; the failures in a row."""
        last, times = self.failures.get(tp, (offset, 0))
        times = times + 1 if last == offset else 1
        self.failures[tp] = (offset, times)
        return times

    def hold(self, tp: TopicPartition, first_offset: int, error: Exception) -> None:
        pause = self.pauses.get(tp, FIRST_PAUSE)
        self.pauses[tp] = min(pause * 2, LONGEST_PAUSE)
        self.consumer.seek(tp, first_offset)
        self.consumer.pause(tp)
        self.until[tp] = time.monotonic() + pause
        # The scrubbed reason: a database error's text may quote the row's values.
        self.problems[_problem(tp)] = failure_reason(error)
        log.warning(
            "consumer.partition_held",
            topic=tp.topic,
            partition=tp.partition,
            offset=first_offset,
            error=self.problems[_problem(tp)],
            retry_in=pause,
        )

    def through(self, tp: TopicPartition) -> None:
        self.failures.pop(tp, None)
        if self.pauses.pop(tp, None) is not None:
            self.problems.pop(_problem(tp), None)

    def resume_due(self) -> None:
        now = time.monotonic()
        assigned = self.consumer.assignment()
        for tp, until in list(self.until.items()):
            if until <= now:
                del self.until[tp]
                if tp in assigned:  # a rebalance may have moved it elsewhere meanwhile
                    self.consumer.resume(tp)


def _problem(tp: TopicPartition) -> str:
    return f"consumer:{tp.topic}[{tp.partition}]"


# What a failure's text may carry of the fact: SQLAlchemy appends the statement and its
# parameters, drivers quote the offending value, PostgreSQL adds a DETAIL line with the key.
_STATEMENT = re.compile(r"\[(SQL|parameters):.*", re.DOTALL)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|\([^()]*\)=\([^()]*\)")


def failure_reason(error: BaseException) -> str:
    """A failure's type and first line, without the values it quotes: what may be kept
    in ``dead_letters``, shown by ``/ready`` and logged (no personal data, no secrets)."""
    text = _STATEMENT.sub("", str(error)).strip().splitlines()
    first = _QUOTED.sub("…", text[0]) if text else ""
    return f"{type(error).__name__}: {first}"[:REASON_MAX]


def _key_text(key: bytes | None) -> str | None:
    """A message's key (a stream id) as text for the table."""
    return key.decode("utf-8", "replace")[:200] if key is not None else None


async def prune_inbox(db: ReadModelDB, before: datetime, chunk: int = PRUNE_CHUNK) -> int:
    """Remove the inbox entries handled before ``before``; how many went.

    Entries without a time (recorded before the column existed, or by an older
    replica during an upgrade) are stamped now rather than removed, so they
    are kept one retention from here. Deletes ``chunk`` entries per transaction.
    """
    async with db.transaction() as conn:
        await conn.execute(
            update(inbox).where(inbox.c.handled_at.is_(None)).values(handled_at=datetime.now(UTC))
        )
    removed = 0
    key = tuple_(inbox.c.consumer, inbox.c.event_id)
    while True:
        oldest = select(inbox.c.consumer, inbox.c.event_id).where(inbox.c.handled_at < before)
        async with db.transaction() as conn:
            result = await conn.execute(delete(inbox).where(key.in_(oldest.limit(chunk))))
        removed += result.rowcount
        if result.rowcount < chunk:
            break
    INBOX_PRUNED.inc(removed)
    return removed


async def keep_inbox_pruned(db: ReadModelDB, retention: timedelta) -> None:
    """Prune the inbox now and every ``PRUNE_EVERY`` seconds (a service's task)."""
    while True:
        removed = await prune_inbox(db, datetime.now(UTC) - retention)
        if removed:
            log.info("inbox.pruned", removed=removed, retention_days=retention.days)
        await asyncio.sleep(PRUNE_EVERY)


async def trusted_offsets(
    db: ReadModelDB, bootstrap: str, group_id: str, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """The group's next offsets kept in the database, for the partitions whose broker
    still holds, just before that offset, the last event handled there.

    A broker that lost its topics (the embedded one, restarted) numbers them from 0
    again, and the relays publish everything anew: there, a kept offset points at
    other messages, so the consumer goes by Kafka's offsets (and its inbox) instead.
    """
    wanted = {(tp.topic, tp.partition) for tp in partitions}
    async with db.reading() as conn:
        rows = await conn.execute(
            select(
                consumer_offsets.c.topic,
                consumer_offsets.c.partition,
                consumer_offsets.c.next_offset,
                consumer_offsets.c.last_event_id,
            ).where(consumer_offsets.c.group_id == group_id)
        )
        kept = {
            TopicPartition(topic, partition): (int(offset), last)
            for topic, partition, offset, last in rows
            if (topic, partition) in wanted and offset > 0
        }
    found = await messages_at(bootstrap, {tp: offset - 1 for tp, (offset, _) in kept.items()})
    trusted: dict[TopicPartition, int] = {}
    for tp, (offset, last) in kept.items():
        message = found.get(tp)
        if message is not None and _event_id(message.value) == last:
            trusted[tp] = offset
        else:
            log.warning(
                "consumer.offset_not_on_broker",
                group=group_id, topic=tp.topic, partition=tp.partition, offset=offset,
            )  # fmt: skip
    return trusted


def _event_id(value: bytes | None) -> str | None:
    try:
        return str(RecordedEvent.from_json(value or b"").event_id)
    except Exception:
        return None
