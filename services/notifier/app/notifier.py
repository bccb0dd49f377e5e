"""The notifier's application service: its parts, how they start, and its one command."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from services.notifier.app.postman import Postman
from services.notifier.app.processor import Processor
from services.notifier.app.stream import NotifierStream
from services.notifier.app.timekeeper import Timekeeper
from services.notifier.domain.events import Language, registry
from services.notifier.domain.subscription import Subscription, stream_of
from services.notifier.settings import NotifierSettings
from shared.application.commands import CommandAnswer, decide_and_append
from shared.domain.events import Actor
from shared.runtime.service import ServiceRuntime

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
        return await decide_and_append(
            store,
            registry,
            stream_of(staff_id),
            Subscription,
            lambda subscription: subscription.change(staff_id, language, notices),
            answer_id=staff_id,
            actor=actor,
        )
