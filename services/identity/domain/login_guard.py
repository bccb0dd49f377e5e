"""Throttling failed logins: per (login, client address) and per address.

Rules (issue 17):

* ``MAX_FAILURES`` failures in a row of one login from one address lock that
  pair for ``LOCK_FOR`` (429 with ``Retry-After``); a success resets the pair.
  The same login from another address is not affected: failures from
  127.0.0.2 never lock the real user out at 127.0.0.1;
* an address that fails ``ADDRESS_FACTOR`` times as often, whatever the
  logins, within ``LOCK_FOR`` is locked as a whole for ``LOCK_FOR`` (someone
  trying many logins); a success does not reset it (one valid account must
  not buy an attacker more guesses);
* a login's run of failures from an address lasts until a success or the end
  of its lock; an address's run lasts ``LOCK_FOR`` from its first failure
  (then, or when its lock has ended, it starts again from one);
* the counts are state, not history: they live in a table (the application
  layer's ``LoginThrottle``), and the security log gets the first failure of a
  run and the lock-out (with its count), at most two events per pair or
  address and lock period, so failed attempts cannot grow the log without
  bound. Refusals while locked are logged, not appended.

Everything here is pure: the time is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.identity.domain.events import LoginFailed, LoginLockedOut
from shared.domain.events import DomainEvent

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
ADDRESS_FACTOR = 4

FailureReason = Literal[
    "bad_credentials", "disabled", "ip_not_allowed", "group_denied", "otp_required", "otp_invalid"
]


@dataclass(frozen=True, slots=True)
class Attempts:
    """The failures of one key (a login from an address, or an address) so far."""

    failures: int = 0
    since: datetime | None = None  # the first failure of the run
    locked_until: datetime | None = None

    def locked(self, now: datetime) -> datetime | None:
        """Until when the key is locked, or None."""
        if self.locked_until is not None and now < self.locked_until:
            return self.locked_until
        return None

    def failed(
        self,
        now: datetime,
        max_failures: int,
        lock_for: timedelta,
        window: timedelta | None = None,
    ) -> Attempts:
        """The state after one more failure; a run older than ``window`` starts again."""
        lock_over = self.locked_until is not None and now >= self.locked_until
        expired = window is not None and self.since is not None and now - self.since >= window
        fresh = self.since is None or expired or lock_over
        failures = 1 if fresh else self.failures + 1
        since = now if fresh or self.since is None else self.since
        if failures >= max_failures:
            locked_until = self.locked_until if self.locked(now) else now + lock_for
            return Attempts(failures, since, locked_until)
        return Attempts(failures, since, None)


def newly_locked(before: Attempts, after: Attempts, now: datetime) -> bool:
    return after.locked(now) is not None and before.locked(now) is None


def security_events(
    *,
    pair: tuple[Attempts, Attempts],
    address: tuple[Attempts, Attempts],
    now: datetime,
    login: str,
    ip: str | None,
    reason: FailureReason,
    principal_id: str | None,
) -> list[DomainEvent]:
    """What the security log keeps of one failure: the start of a run, and lock-outs."""
    events: list[DomainEvent] = []
    before, after = pair
    if after.failures == 1:
        events.append(
            LoginFailed(
                login=login, ip=ip, reason=reason, failures_in_a_row=1, principal_id=principal_id
            )
        )
    if newly_locked(before, after, now):
        assert after.locked_until is not None
        events.append(
            LoginLockedOut(
                login=login,
                until=after.locked_until,
                principal_id=principal_id,
                ip=ip,
                failures=after.failures,
            )
        )
    address_before, address_after = address
    if newly_locked(address_before, address_after, now):
        assert address_after.locked_until is not None
        events.append(
            LoginLockedOut(
                login="",
                until=address_after.locked_until,
                ip=ip,
                failures=address_after.failures,
                scope="address",
            )
        )
    return events
