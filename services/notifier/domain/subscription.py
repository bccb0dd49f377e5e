"""A staff member's subscription: which notices they get, by e-mail and/or SMS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.notifier.domain.events import (
    CHANNELS,
    STAFF_NOTICES,
    Channel,
    Language,
    StaffNotice,
    SubscriptionChanged,
)
from shared.domain.aggregate import Aggregate, DomainError
from shared.domain.events import DomainEvent


def stream_of(staff_id: str) -> str:
    return f"subscription-{staff_id}"


class Subscription(Aggregate):
    """Nothing by default: a staff member opts in per notice and channel."""

    def __init__(self) -> None:
        super().__init__()
        self.language: Language = "en"
        self.notices: dict[StaffNotice, list[Channel]] = {}

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, SubscriptionChanged):
            self.language = event.language
            self.notices = {k: list(v) for k, v in event.notices.items() if v}

    def wants(self, notice: StaffNotice, channel: Channel) -> bool:
        return channel in self.notices.get(notice, [])

    def change(
        self,
        staff_id: str,
        language: Language,
        notices: Mapping[str, Sequence[str]],
    ) -> list[DomainEvent]:
        """Replace the subscription; nothing when it is the same already."""
        wanted: dict[StaffNotice, list[Channel]] = {}
        for notice, channels in notices.items():
            if notice not in STAFF_NOTICES:
                raise DomainError(f"notices.{notice}", f"unknown notice; one of {STAFF_NOTICES}")
            for channel in channels:
                if channel not in CHANNELS:
                    raise DomainError(f"notices.{notice}", f"unknown channel {channel!r}")
            chosen = [c for c in CHANNELS if c in channels]  # one order, no repeats
            if chosen:
                wanted[notice] = chosen
        if self.version and wanted == self.notices and language == self.language:
            return []
        return [SubscriptionChanged(staff_id=staff_id, language=language, notices=wanted)]
