"""A notice's delivery: queued, retried with back-off, then sent or failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.notifier.domain.events import (
    DeliveryAttemptFailed,
    NoticeFailed,
    NoticeQueued,
    NoticeSent,
)
from shared.domain.aggregate import Aggregate
from shared.domain.events import DomainEvent

DeliveryStatus = Literal["none", "queued", "retrying", "sent", "failed"]


def stream_of(notice_id: str) -> str:
    return f"notice-{notice_id}"


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all; the n-th retry waits ``first_delay * factor**(n-1)``, capped."""

    attempts: int = 5
    first_delay: timedelta = timedelta(seconds=5)
    factor: float = 2.0
    max_delay: timedelta = timedelta(minutes=10)

    def delay_after(self, attempt: int) -> timedelta:
        delay = self.first_delay * (self.factor ** max(0, attempt - 1))
        return min(delay, self.max_delay)


class Delivery(Aggregate):
    def __init__(self) -> None:
        super().__init__()
        self.status: DeliveryStatus = "none"
        self.attempts = 0
        self.notice_id = ""
        self.subject_id = ""

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, NoticeQueued):
            self.status, self.notice_id, self.subject_id = (
                "queued",
                event.notice_id,
                event.subject_id,
            )
        elif isinstance(event, DeliveryAttemptFailed):
            self.status, self.attempts = "retrying", event.attempt
        elif isinstance(event, NoticeSent):
            self.status, self.attempts = "sent", event.attempt
        elif isinstance(event, NoticeFailed):
            self.status, self.attempts = "failed", event.attempt

    @property
    def pending(self) -> bool:
        return self.status in ("queued", "retrying")

    def sent(self, now: datetime) -> list[DomainEvent]:
        if not self.pending:
            return []
        return [
            NoticeSent(
                notice_id=self.notice_id,
                subject_id=self.subject_id,
                attempt=self.attempts + 1,
                sent_at=now,
            )
        ]

    def attempt_failed(self, error: str, now: datetime, policy: RetryPolicy) -> list[DomainEvent]:
        """Retry later, or give up after the policy's last attempt."""
        if not self.pending:
            return []
        attempt = self.attempts + 1
        error = error[:500]
        if attempt >= policy.attempts:
            return [
                NoticeFailed(
                    notice_id=self.notice_id,
                    subject_id=self.subject_id,
                    attempt=attempt,
                    error=error,
                    failed_at=now,
                )
            ]
        return [
            DeliveryAttemptFailed(
                notice_id=self.notice_id,
                subject_id=self.subject_id,
                attempt=attempt,
                error=error,
                retry_at=now + policy.delay_after(attempt),
            )
        ]
