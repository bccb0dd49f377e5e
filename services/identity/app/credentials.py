"""The credential store: argon2 hashes in identity's own database, never in the event log.

Keeping hashes out of the log means no topic, replay or export can ever carry
them; the log records only ``PasswordChanged``. Crypto-shredding of a client
deletes its row here as well.

Argon2 runs in a bounded thread pool (``ARGON2_THREADS``), never on the event
loop: a burst of logins queues there instead of stalling every request.
Checking a password costs the same for an unknown login (a decoy hash).
``must_change`` marks a password someone else knows (the generated first
admin password): it logs in only together with a new one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, Column, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.aggregate import Conflict, DomainError
from shared.readmodel.database import ReadModelDB, UtcDateTime

metadata = MetaData()

credentials = Table(
    "credentials",
    metadata,
    Column("principal_id", String(64), primary_key=True),
    Column("login", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("hash", String(256), nullable=False),
    Column("changed_at", UtcDateTime(), nullable=False),
    Column("must_change", Boolean, nullable=True),
)

MIN_PASSWORD = 8
MAX_PASSWORD = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Credential:
    principal_id: str
    kind: str
    hash: str = dataclasses.field(repr=False)  # never in a log line
    must_change: bool = False


def check_password(password: str, field: str = "password") -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise DomainError(field, f"{MIN_PASSWORD} to {MAX_PASSWORD} characters")


class CredentialStore:
    def __init__(self, db: ReadModelDB, hasher: PasswordHasher | None = None) -> None:
        self.db = db
        self.hasher = hasher or PasswordHasher()
        # Verified against when the login is unknown, so both cases take as long.
        self._decoy = self.hasher.hash("decoy password for unknown logins")
        self._pool = ThreadPoolExecutor(
            max_workers=int(os.environ.get("ARGON2_THREADS", "2")), thread_name_prefix="argon2"
        )

    async def create_tables(self) -> None:
        await self.db.create_tables(metadata, add_new_columns=True)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self.hasher.hash, password
        )

    async def add(
        self, principal_id: str, login: str, kind: str, password: str, must_change: bool = False
    ) -> None:
        """Store a new principal's hash; 409 ``duplicate_login`` when the login is taken."""
        check_password(password)
        digest = await self._hash(password)
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    credentials.insert().values(
                        principal_id=principal_id,
                        login=login.lower(),
                        kind=kind,
                        hash=digest,
                        changed_at=datetime.now(UTC),
                        must_change=must_change or None,
                    )
                )
        except IntegrityError:
            if await self.login_of(principal_id) is not None:
                raise Conflict(
                    "duplicate_principal", f"principal {principal_id} has a credential"
                ) from None
            raise Conflict("duplicate_login", f"login {login!r} is taken") from None

    async def remove(self, principal_id: str) -> None:
        """Undo ``add`` when the event that should follow it could not be written."""
        async with self.db.transaction() as conn:
            await conn.execute(
                credentials.delete().where(credentials.c.principal_id == principal_id)
            )

    async def change(self, principal_id: str, password: str) -> None:
        check_password(password)
        digest = await self._hash(password)
        async with self.db.transaction() as conn:
            await conn.execute(
                credentials.update()
                .where(credentials.c.principal_id == principal_id)
                .values(hash=digest, changed_at=datetime.now(UTC), must_change=None)
            )

    async def find(self, login: str) -> Credential | None:
        """Whose login this is (not yet whether the password is right)."""
        async with self.db.engine.connect() as conn:
            row = await _row(conn, login)
        if row is None:
            return None
        return Credential(
            str(row.principal_id), str(row.kind), str(row.hash), bool(row.must_change)
        )

    async def of_principal(self, principal_id: str) -> Credential | None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        credentials.c.principal_id, credentials.c.kind, credentials.c.hash
                    ).where(credentials.c.principal_id == principal_id)
                )
            ).first()
        if row is None:
            return None
        return Credential(str(row.principal_id), str(row.kind), str(row.hash))

    async def matches(self, found: Credential | None, password: str) -> bool:
        """Does ``password`` match? An unknown login is checked against a decoy, as slowly."""
        return (
            await asyncio.get_running_loop().run_in_executor(
                self._pool, self._matches, found.hash if found else self._decoy, password
            )
            and found is not None
        )

    def _matches(self, digest: str, password: str) -> bool:
        try:
            self.hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return False
        return True

    async def verify(self, login: str, password: str) -> tuple[str, str] | None:
        """(principal_id, kind) when the password matches the login; None otherwise."""
        found = await self.find(login)
        matched = await self.matches(found, password)  # also for an unknown login: as slow
        if found is None or not matched:
            return None
        return found.principal_id, found.kind

    async def exists(self, login: str) -> bool:
        async with self.db.engine.connect() as conn:
            return await _row(conn, login) is not None

    async def login_of(self, principal_id: str) -> str | None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(credentials.c.login).where(credentials.c.principal_id == principal_id)
                )
            ).first()
        return None if row is None else str(row.login)


async def _row(conn: AsyncConnection, login: str):  # type: ignore[no-untyped-def]
    result = await conn.execute(
        select(
            credentials.c.principal_id,
            credentials.c.kind,
            credentials.c.hash,
            credentials.c.must_change,
        ).where(credentials.c.login == login.lower())
    )
    return result.first()
