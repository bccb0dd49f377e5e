"""Failed-login counts, per (login, address) and per address, in identity's database.

The rules are the domain's (``services.identity.domain.login_guard``); this
keeps their state in one table shared by every replica, keyed by a keyed hash
(logins and addresses are personal data, and the table needs neither in clear).
A failure is counted under a row lock, so concurrent failures are all counted.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from sqlalchemy import Column, Integer, MetaData, String, Table, select

from services.identity.domain.login_guard import Attempts
from shared.readmodel import ReadModelDB, UtcDateTime

metadata = MetaData()

login_attempts = Table(
    "login_attempts",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("since", UtcDateTime(), nullable=True),
    Column("locked_until", UtcDateTime(), nullable=True),
)


class LoginThrottle:
    def __init__(self, db: ReadModelDB, secret: str) -> None:
        self.db = db
        self._secret = secret.encode()

    async def create_tables(self) -> None:
        await self.db.create_tables(metadata)

    def pair_key(self, login: str, ip: str | None) -> str:
        return "pair:" + self._digest(f"{login.lower()}\0{ip or ''}")

    def address_key(self, ip: str | None) -> str:
        return "addr:" + self._digest(ip or "")

    def _digest(self, text: str) -> str:
        return hmac.new(
            self._secret, b"login-throttle:" + text.encode(), hashlib.sha256
        ).hexdigest()[:64]

    async def states(self, *keys: str) -> list[Attempts]:
        async with self.db.engine.connect() as conn:
            rows = {
                r.key: r
                for r in await conn.execute(
                    select(login_attempts).where(login_attempts.c.key.in_(keys))
                )
            }
        return [_attempts(rows.get(key)) for key in keys]

    async def failed(
        self,
        key: str,
        now: datetime,
        max_failures: int,
        lock_for: timedelta,
        window: timedelta | None = None,
    ) -> tuple[Attempts, Attempts]:
        """Count one failure of ``key``: (the state before, the state after)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                self.db.insert_ignoring_duplicates(login_attempts, key=key, failures=0)
            )
            row = (
                await conn.execute(
                    select(login_attempts).where(login_attempts.c.key == key).with_for_update()
                )
            ).first()
            before = _attempts(row)
            after = before.failed(now, max_failures, lock_for, window)
            await conn.execute(
                login_attempts.update()
                .where(login_attempts.c.key == key)
                .values(failures=after.failures, since=after.since, locked_until=after.locked_until)
            )
        return before, after

    async def succeeded(self, key: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(login_attempts.delete().where(login_attempts.c.key == key))


def _attempts(row: object | None) -> Attempts:
    if row is None:
        return Attempts()
    return Attempts(
        failures=int(row.failures),  # type: ignore[attr-defined]
        since=row.since,  # type: ignore[attr-defined]
        locked_until=row.locked_until,  # type: ignore[attr-defined]
    )
