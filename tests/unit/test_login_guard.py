"""The login throttle's rules, as pure functions of the time (issue 17)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.identity.domain.events import LoginFailed, LoginLockedOut
from services.identity.domain.login_guard import Attempts, security_events

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LOCK = timedelta(minutes=15)


def failures(
    n: int, every: timedelta = timedelta(seconds=1), window: timedelta | None = None
) -> Attempts:
    state = Attempts()
    for i in range(n):
        state = state.failed(T0 + i * every, 5, LOCK, window)
    return state


def test_five_failures_in_a_row_lock_for_the_lock_time() -> None:
    assert failures(4).locked(T0 + timedelta(seconds=4)) is None
    locked = failures(5)
    assert locked.locked(T0 + timedelta(seconds=5)) == T0 + timedelta(seconds=4) + LOCK
    assert locked.locked(T0 + timedelta(seconds=4) + LOCK) is None


def test_more_failures_while_locked_do_not_move_the_end_of_the_lock() -> None:
    locked = failures(5)
    again = locked.failed(T0 + timedelta(minutes=5), 5, LOCK)
    assert again.locked_until == locked.locked_until


def test_an_addresss_run_older_than_its_window_starts_again() -> None:
    slow = failures(6, every=timedelta(minutes=4), window=LOCK)  # 0, 4, 8, 12, 16 (new), 20
    assert slow.failures == 2 and slow.locked_until is None
    # A login's failures in a row from one address have no window: only a success ends them.
    assert failures(6, every=timedelta(minutes=4)).locked_until is not None


def test_the_log_keeps_the_start_of_a_run_and_the_lock_out_only() -> None:
    kept: list[object] = []
    pair = address = Attempts()
    for i in range(12):
        now = T0 + timedelta(seconds=i)
        new_pair, new_address = pair.failed(now, 5, LOCK), address.failed(now, 20, LOCK, LOCK)
        kept += security_events(
            pair=(pair, new_pair),
            address=(address, new_address),
            now=now,
            login="admin",
            ip="192.0.2.1",
            reason="bad_credentials",
            principal_id=None,
        )
        pair, address = new_pair, new_address
    assert [type(e) for e in kept] == [LoginFailed, LoginLockedOut]
    assert isinstance(kept[1], LoginLockedOut) and kept[1].failures == 5
