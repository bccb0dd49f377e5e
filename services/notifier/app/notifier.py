"""The notifier's application service: its parts, how they start, and its one command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from services.notifier.adapters.clients_http import ClientsHttp
from services.notifier.adapters.conversations_http import Conversations
from services.notifier.adapters.mail import SmtpMailer
from services.notifier.adapters.sms import HttpSms
from services.notifier.app.postman import Postman
from services.notifier.app.processor import Processor
from services.notifier.app.stream import NotifierStream, quiet_faust
from services.notifier.app.timekeeper import Timekeeper
from services.notifier.domain.events import Language, registry
from services.notifier.domain.subscription import Subscription, stream_of
from services.notifier.settings import NotifierSettings
from shared.api import CommandAnswer
from shared.app import append, load
from shared.events import Actor
from shared.kafka import topic_of
from shared.service import ServiceRuntime
from shared.shredding import KeyRing

log = structlog.get_logger(__name__)

INPUT_CONTEXTS = ("identity", "departments", "clients", "tickets", "notifier")


@dataclass
class Notifier:
    runtime: ServiceRuntime
    settings: NotifierSettings
    processor: Processor
    stream: NotifierStream
    timekeeper: Timekeeper
    postman: Postman
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def change_subscription(
        self,
        staff_id: str,
        language: Language,
        notices: Mapping[str, Sequence[str]],
        actor: Actor,
    ) -> CommandAnswer:
        store = self.runtime.store
        assert store is not None
        stream = stream_of(staff_id)
        subscription = await load(store, registry, stream, Subscription)
        events = subscription.change(staff_id, language, notices)
        result = await append(store, registry, stream, events, subscription.version, actor=actor)
        if result is None:
            return CommandAnswer(id=staff_id, version=subscription.version, position=0)
        return CommandAnswer.of(staff_id, result)


async def start(runtime: ServiceRuntime) -> None:
    """Build the parts and run them under the runtime's supervision."""
    assert runtime.store is not None and runtime.db is not None
    settings = NotifierSettings()
    secret = runtime.settings.jwt_secret
    assert secret is not None
    quiet_faust()
    keys = KeyRing(runtime.db)
    clients = ClientsHttp(settings.clients_url, secret.get_secret_value())
    conversations = Conversations(
        settings.tickets_url, settings.clients_url, secret.get_secret_value()
    )
    sms = HttpSms(settings)
    views = runtime.runners["notifier"]
    postman = Postman(
        runtime.store,
        runtime.db,
        views,
        SmtpMailer(settings, conversations.file, secret.get_secret_value()),
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
        handle=processor.handle,
        session_timeout=settings.stream_session_timeout_seconds,
        heartbeat=settings.stream_heartbeat_seconds,
    )
    timekeeper = Timekeeper(runtime.store, runtime.db, views)
    notifier = Notifier(runtime, settings, processor, stream, timekeeper, postman)
    notifier.closers += [clients.close, sms.close, conversations.close]
    runtime.extensions["notifier"] = notifier
    runtime.tasks.append(asyncio.create_task(_close_on_stop(notifier.closers)))
    for name, work in (
        ("notifier:stream", stream.run),
        ("notifier:timekeeper", timekeeper.run),
        ("notifier:postman", postman.run),
    ):
        runtime.supervise(name, work)


async def _close_on_stop(closers: list[Callable[[], Awaitable[None]]]) -> None:
    """Close the HTTP clients when the runtime cancels its tasks."""
    try:
        await asyncio.Event().wait()
    finally:
        for close in closers:
            await close()
