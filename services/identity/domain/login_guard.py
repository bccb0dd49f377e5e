"""Lock-out after repeated failed logins, per login.

Five failures in a row lock the login for a while (429 with ``Retry-After``);
a success resets the count, and so does the end of a lock-out. The stream is
``login-<login>`` for staff; a client's is named by its principal and an
unknown login's by a keyed hash, with ``login`` left empty in the events, so
that no client login reaches the topic (see ``Identity.guard_of``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from services.identity.domain.events import LoginFailed, LoginLockedOut, LoginSucceeded
from shared.domain.aggregate import Aggregate
from shared.domain.events import DomainEvent

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)

FailureReason = Literal["bad_credentials", "disabled", "ip_not_allowed", "group_denied"]


class LoginGuard(Aggregate):
    def __init__(self) -> None:
        super().__init__()
        self.failures_in_a_row = 0
        self.locked_until: datetime | None = None

    def locked(self, now: datetime) -> datetime | None:
        """Until when the login is locked, or None."""
        if self.locked_until is not None and now < self.locked_until:
            return self.locked_until
        return None

    def failed(
        self,
        login: str,
        ip: str | None,
        reason: FailureReason,
        now: datetime,
        max_failures: int = MAX_FAILURES,
        lock_for: timedelta = LOCK_FOR,
        principal_id: str | None = None,
    ) -> list[DomainEvent]:
        previous = 0 if self._lock_expired(now) else self.failures_in_a_row
        count = previous + 1
        events: list[DomainEvent] = [
            LoginFailed(
                login=login,
                ip=ip,
                reason=reason,
                failures_in_a_row=count,
                principal_id=principal_id,
            )
        ]
        if count >= max_failures:
            events.append(
                LoginLockedOut(login=login, until=now + lock_for, principal_id=principal_id)
            )
        return events

    def refused_while_locked(
        self, login: str, ip: str | None, principal_id: str | None = None
    ) -> list[DomainEvent]:
        return [
            LoginFailed(
                login=login,
                ip=ip,
                reason="locked_out",
                failures_in_a_row=self.failures_in_a_row,
                principal_id=principal_id,
            )
        ]

    def succeeded(
        self, login: str, ip: str | None, session_id: str, principal_id: str | None = None
    ) -> list[DomainEvent]:
        return [
            LoginSucceeded(login=login, ip=ip, session_id=session_id, principal_id=principal_id)
        ]

    def _lock_expired(self, now: datetime) -> bool:
        return self.locked_until is not None and now >= self.locked_until

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, LoginFailed):
            if event.reason != "locked_out":
                self.failures_in_a_row = event.failures_in_a_row
                if event.failures_in_a_row == 1:
                    self.locked_until = None  # a new run of failures: any old lock is over
        elif isinstance(event, LoginLockedOut):
            self.locked_until = event.until
        elif isinstance(event, LoginSucceeded):
            self.failures_in_a_row = 0
            self.locked_until = None
