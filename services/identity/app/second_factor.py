"""The second factor of staff: TOTP (RFC 6238, pyotp) and single-use recovery codes.

Rules kept here:

* The secret is made here and kept only sealed with the member's key in
  ``SecondFactorEnrolled`` (``shared.privacy.shredding``): never in clear in the
  store, on the topic or in a log. The ``otpauth://`` URI that carries it is
  answered once, to the member.
* Confirming with a right code turns it on (``SecondFactorEnabled``) and answers
  ``RECOVERY_CODES`` recovery codes once; identity keeps only their SHA-256
  (they are random, 50 bits each: a slow hash adds nothing).
* A code is accepted once: the time step of the last accepted code is kept and
  only a later step passes (a code seen by someone over the shoulder is spent);
  a recovery code is removed in the same conditional update that accepts it.
  Codes of one step before and after now are accepted (clock drift).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pyotp
from sqlalchemy import BigInteger, Column, MetaData, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.identity.app.handlers import Identity, staff_stream
from services.identity.domain.events import (
    RecoveryCodeUsed,
    SecondFactorEnrolled,
    registry,
)
from services.identity.domain.staff import Staff
from shared.application.commands import CommandAnswer, append
from shared.domain import Forbidden
from shared.domain.aggregate import Conflict
from shared.domain.events import Actor, DomainEvent
from shared.eventstore import StreamState
from shared.privacy.shredding import KeyRing, Sealer
from shared.readmodel.database import upsert

ISSUER = "Back office"
RECOVERY_CODES = 10
STEP_SECONDS = 30
DRIFT_STEPS = 1

metadata = MetaData()

second_factor_codes = Table(
    "second_factor_codes",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("last_step", BigInteger, nullable=True),  # of the last TOTP code accepted
    Column("recovery", Text, nullable=False),  # JSON list of SHA-256 of unused codes
)


def _digest(code: str) -> str:
    return hashlib.sha256(_normal(code).encode()).hexdigest()


def _normal(code: str) -> str:
    return code.strip().replace("-", "").replace(" ", "").lower()


def recovery_code() -> str:
    raw = "".join(secrets.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


@dataclass
class SecondFactors:
    identity: Identity
    keys: KeyRing

    def __post_init__(self) -> None:
        self.sealer = Sealer(registry, self.keys)

    async def create_tables(self) -> None:
        await self.identity.db.create_tables(metadata)
        await self.keys.create_tables()

    async def enroll(self, actor: Actor, staff_id: str, login: str) -> str:
        """A new secret for the member; the ``otpauth://`` URI that carries it."""
        secret = pyotp.random_base32()
        await self.identity.decide_member(
            staff_id,
            lambda staff: staff.enroll_second_factor(secret),
            actor,
            sealer=self.sealer,
        )
        return pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=ISSUER)

    async def confirm(self, actor: Actor, staff_id: str, code: str) -> list[str]:
        """Turn it on with a right code; the recovery codes, shown this once."""
        secret = await self._secret(staff_id)
        step = matching_step(secret, code) if secret else None
        if step is None:
            raise Forbidden("otp_invalid", "the code is wrong or too old", "code")
        codes = [recovery_code() for _ in range(RECOVERY_CODES)]
        hashes = orjson.dumps([_digest(c) for c in codes]).decode()

        async def enable(staff: Staff) -> list[DomainEvent]:
            events = staff.enable_second_factor(len(codes))
            if events:
                async with self.identity.db.transaction() as conn:
                    await self._set_codes(conn, staff_id, step, hashes)
            return events

        answer = await self.identity.decide_member(staff_id, enable, actor)
        if not answer.position:
            raise Conflict("second_factor_on", "the second factor is on already")
        return codes

    async def disable(self, actor: Actor, staff_id: str, code: str) -> CommandAnswer:
        """Turn it off with a current code (or a recovery code)."""
        if not await self.accept(staff_id, code):
            raise Forbidden("otp_invalid", "the code is wrong or was used", "code")
        return await self.identity.decide_member(
            staff_id, lambda staff: staff.disable_second_factor(actor.id), actor
        )

    async def accept(self, staff_id: str, code: str) -> bool:
        """Whether ``code`` is a TOTP code of now not used before, or an unused recovery
        code; either is spent by accepting it."""
        secret = await self._secret(staff_id)
        if secret is None:
            return False
        step = matching_step(secret, code)
        async with self.identity.db.transaction() as conn:
            row = (
                await conn.execute(
                    select(second_factor_codes).where(second_factor_codes.c.staff_id == staff_id)
                )
            ).first()
            if row is None:
                return False
            if step is not None:
                spent = await conn.execute(
                    second_factor_codes.update()
                    .where(
                        second_factor_codes.c.staff_id == staff_id,
                        (second_factor_codes.c.last_step.is_(None))
                        | (second_factor_codes.c.last_step < step),
                    )
                    .values(last_step=step)
                )
                return bool(spent.rowcount)
            left: list[str] = orjson.loads(row.recovery)
            digest = _digest(code)
            if digest not in left:
                return False
            left.remove(digest)
            # Compare-and-set on the list: of two logins with one code, one wins.
            spent = await conn.execute(
                second_factor_codes.update()
                .where(
                    second_factor_codes.c.staff_id == staff_id,
                    second_factor_codes.c.recovery == row.recovery,
                )
                .values(recovery=orjson.dumps(left).decode())
            )
        if not spent.rowcount:
            return False
        await append(
            self.identity.store,
            registry,
            staff_stream(staff_id),
            [RecoveryCodeUsed(staff_id=staff_id, left=len(left))],
            0,
            actor=Actor(id=staff_id, kind="staff"),
            expected=StreamState.ANY,  # a record of what was accepted, decided above
        )
        return True

    async def _secret(self, staff_id: str) -> str | None:
        """The secret of the last enrolment, opened; None when there is none."""
        recorded = await self.identity.store.read_stream(staff_stream(staff_id))
        for event in reversed(recorded):
            if event.type == SecondFactorEnrolled.event_type:
                opened = await self.sealer.open(event)
                assert isinstance(opened, SecondFactorEnrolled)
                return opened.secret
        return None

    async def _set_codes(
        self, conn: AsyncConnection, staff_id: str, step: int, hashes: str
    ) -> None:
        row = {"staff_id": staff_id, "last_step": step, "recovery": hashes}
        await upsert(conn, second_factor_codes, row)


def matching_step(secret: str, code: str) -> int | None:
    """The time step whose TOTP code ``code`` is (now, or one step off); None if none."""
    code = code.strip()
    if not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    now = datetime.now(UTC)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if secrets.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None
