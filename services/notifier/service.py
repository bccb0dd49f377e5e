"""How the notifier service plugs into the kernel: routers, projections, its own workers.

The composition root: its workers (the faust stream processor, the timekeeper,
the postman) are built here from the adapters (SMTP, SMS gateway, the clients
service, identity's reset links), start with the service and stop with it; see ``app/notifier.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import services.notifier as package
from services.notifier.adapters.clients_http import ClientsHttp
from services.notifier.adapters.conversations_http import Conversations
from services.notifier.adapters.identity_http import IdentityHttp
from services.notifier.adapters.mail import SmtpMailer
from services.notifier.adapters.sms import HttpSms
from services.notifier.api import router
from services.notifier.app.notifier import INPUT_CONTEXTS, Notifier
from services.notifier.app.postman import Postman
from services.notifier.app.processor import Processor
from services.notifier.app.stream import NotifierStream, dead_letters, quiet_faust
from services.notifier.app.timekeeper import Timekeeper
from services.notifier.domain import events
from services.notifier.projections import projections
from services.notifier.settings import NotifierSettings
from shared.domain.events import RecordedEvent
from shared.names import topic_of
from shared.privacy.shredding import KeyRing
from shared.runtime.service import ServiceRuntime, ServiceSpec


async def compose(runtime: ServiceRuntime) -> Notifier:
    """Build the parts and run them under the runtime's supervision."""
    assert runtime.store is not None and runtime.db is not None
    settings = NotifierSettings()
    # The notifier's own key: its service tokens and the rating links it mails.
    key = runtime.service_key
    assert key is not None
    quiet_faust()
    keys = KeyRing(runtime.db)
    clients = ClientsHttp(settings.clients_url, key)
    conversations = Conversations(settings.tickets_url, settings.clients_url, key)
    sms = HttpSms(settings)
    identity = IdentityHttp(settings.identity_url, key)
    views = runtime.runners["notifier"]
    mailer = SmtpMailer(settings, conversations.file, key, identity.reset_link)
    postman = Postman(
        runtime.store,
        runtime.db,
        views,
        mailer,
        sms,
        settings.retry_policy(),
        concurrency=settings.delivery_concurrency,
    )
    processor = Processor(
        runtime.store,
        runtime.db,
        keys,
        clients,
        conversations,
        timedelta(minutes=settings.sla_warning_minutes),
        on_queued=postman.wake,
    )
    await processor.start()
    prefix = runtime.settings.topic_prefix
    stream = NotifierStream(
        runtime.settings.kafka_bootstrap_servers,
        [topic_of(context, prefix) for context in INPUT_CONTEXTS],
        group_id=f"{prefix}notifier.stream",
        handle=_admitted(runtime, processor.handle),
        handle_batch=_admitted_batch(runtime, processor.handle_batch),
        dead_letters=dead_letters(
            runtime.db,
            runtime.settings.kafka_bootstrap_servers,
            f"{prefix}notifier.stream",
            runtime.problems,
            runtime.settings.consumer_max_failures,
        ),
        session_timeout=settings.stream_session_timeout_seconds,
        heartbeat=settings.stream_heartbeat_seconds,
    )
    timekeeper = Timekeeper(runtime.store, runtime.db, views)
    notifier = Notifier(runtime, settings, processor, stream, timekeeper, postman)
    notifier.closers += [
        clients.close, sms.close, conversations.close, identity.close, mailer.close,
    ]  # fmt: skip
    runtime.tasks.append(asyncio.create_task(_close_on_stop(notifier.closers)))
    for name, work in (
        ("notifier:stream", stream.run),
        ("notifier:dead-letters", stream.watch_dead_letters),
        ("notifier:timekeeper", timekeeper.run),
        ("notifier:postman", postman.run),
    ):
        runtime.supervise(name, work)
    return notifier


async def _close_on_stop(closers: list[Callable[[], Awaitable[None]]]) -> None:
    """Close the HTTP clients when the runtime cancels its tasks."""
    try:
        await asyncio.Event().wait()
    finally:
        for close in closers:
            await close()


def _admitted(
    runtime: ServiceRuntime, handle: Callable[[RecordedEvent], Awaitable[None]]
) -> Callable[[RecordedEvent], Awaitable[None]]:
    """The stream's handler for what the runtime's verifier admits: the notifier keeps
    staff names and addresses from identity's facts, which must carry identity's signature."""
    verifier = runtime.verifier
    assert verifier is not None

    async def admitted(event: RecordedEvent) -> None:
        if verifier.admit(event):
            await handle(event)

    return admitted


def _admitted_batch(
    runtime: ServiceRuntime, handle: Callable[[Sequence[RecordedEvent]], Awaitable[None]]
) -> Callable[[Sequence[RecordedEvent]], Awaitable[None]]:
    """``_admitted`` for a batch: the facts the verifier refuses are left out of it."""
    verifier = runtime.verifier
    assert verifier is not None

    async def admitted(events: Sequence[RecordedEvent]) -> None:
        await handle([event for event in events if verifier.admit(event)])

    return admitted


SPEC = ServiceSpec(
    name="notifier",
    port=8005,
    events=events.registry,
    title="Notifier service",
    description=package.__doc__ or "",
    routers=[router],
    projections=projections,
    compose=compose,
)
