"""Identity's application layer: load an aggregate, let it decide, append; publish access.

Whenever a member's effective access may have changed (their account, their
grants, or their departments' rights), the handler appends a fresh
``StaffAccessChanged`` to the member's stream when it differs from the last
one, so every service's access copy follows. Identity applies it to its own
copy at once (its own requests need not wait for the topic).

Every command on a member is one load-decide-append through the kernel's
``decide_and_append`` (``decide_member``): a conflict is decided again on fresh
state under the kernel's one retry policy, never answered at once. Appends
that decide nothing on a stream's state (a new session, the login guard's
security log) are not retried: they append at a fixed version (a new stream)
or at any (``StreamState.ANY``).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import inspect
import os
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import orjson
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.identity.app.avatars import AvatarStore, check_avatar
from services.identity.app.credentials import Credential, CredentialStore
from services.identity.app.throttle import LoginThrottle
from services.identity.copies.departments import (
    department_change,
    departments_seen,
    record_department,
)
from services.identity.domain.client_principal import ClientPrincipal, client_principal_stream
from services.identity.domain.events import (
    LocalizedName,
    LoginSucceeded,
    SessionStarted,
    registry,
)
from services.identity.domain.login_guard import (
    ADDRESS_FACTOR,
    LOCK_FOR,
    MAX_FAILURES,
    FailureReason,
    newly_locked,
    security_events,
)
from services.identity.domain.staff import Staff
from services.identity.projections import impersonations, sessions, staff_rows
from shared.access.control import (
    SETUP_SECOND_FACTOR,
    AccessCopy,
    ClientAccessChanged,
    PrincipalKind,
    SessionEnded,
    SessionEndReason,
    StaffAccessChanged,
    issue_token,
)
from shared.access.delegation import Grantor
from shared.application import until_known
from shared.application.commands import (
    CommandAnswer,
    Decision,
    append,
    decide_and_append,
    load,
    rebuild,
)
from shared.domain import Forbidden
from shared.domain.aggregate import Conflict, NotFound
from shared.domain.events import Actor, DomainEvent, RecordedEvent
from shared.eventstore import EventStore, StreamState
from shared.privacy.shredding import KeyRing, Sealer
from shared.readmodel.database import ReadModelDB
from shared.runtime.settings import ServiceSettings

log = structlog.get_logger(__name__)

ADMIN_ID = "00000000-0000-4000-8000-000000000001"
ADMIN_LOGIN = "admin"
SESSIONS_WAIT_SECONDS = 3.0
DEPARTMENT_WAIT_SECONDS = 3.0
# Staff members whose folded stream identity keeps in memory (see ``Identity._member``).
MEMBERS_KEPT = 10_000


class LoginRefused(Exception):
    """A login that does not start a session: ``status`` 401, 403 or 429."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class GuardSubject:
    """A login as the lock-out guard records it (see ``Identity.guard_of``)."""

    stream: str
    login: str  # what the guard's events say; empty unless a staff login
    principal_id: str | None
    for_log: dict[str, str]  # how log lines name it


@dataclass
class LoginResult:
    token: str
    principal_id: str
    kind: PrincipalKind
    session_id: str
    scope: str | None = None


def staff_stream(staff_id: str) -> str:
    return f"staff-{staff_id}"


@dataclass
class Identity:
    """The identity application service: every command of the API goes through here."""

    store: EventStore
    db: ReadModelDB
    credentials: CredentialStore
    access: AccessCopy
    settings: ServiceSettings
    department_rights: dict[str, frozenset[str]] = field(default_factory=dict)
    known_departments: set[str] = field(default_factory=set)
    avatars: AvatarStore = field(init=False)
    throttle: LoginThrottle = field(init=False)
    # Client addresses on session and login events are sealed with the principal's
    # key (``shared.privacy.shredding``); erasing a client destroys its key.
    sealer: Sealer = field(init=False)
    denied_groups: frozenset[str] = frozenset()
    max_failures: int = MAX_FAILURES
    lock_for: timedelta = LOCK_FOR
    # Waits until the read models have applied a position (the runtime's
    # ``wait_for_position``): the sessions table must know a session that
    # started a moment ago before identity looks for sessions to end.
    wait_for_position: Callable[[int, float], Awaitable[bool]] | None = None
    # Accepts (and spends) a staff member's one-time code (``SecondFactors.accept``),
    # set by the composition root: the second factor is a part of its own.
    second_factor: Callable[[str, str], Awaitable[bool]] | None = None
    # OTP_REQUIRED_FOR_FULL_ACCESS: a full-access member without a second factor
    # gets a session limited to setting one up.
    otp_required_for_full_access: bool = False
    # staff id -> (the member folded up to its version, the access fact last
    # published). Streams only grow, so a fold stays true; see ``_member``.
    _folded: OrderedDict[str, tuple[Staff, StaffAccessChanged | None]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )

    @functools.cached_property
    def signing_key(self) -> Ed25519PrivateKey:
        """Identity's own key (IDENTITY_SIGNING_KEY): only identity issues user tokens."""
        return self.settings.identity_private_key()

    @property
    def secret(self) -> str:
        """Keys identity's own HMACs (login guard, throttle): derived from its signing key,
        so no second secret is configured and none is shared with another service."""
        raw = self.signing_key.private_bytes_raw()
        return hmac.new(raw, b"identity-hmac", hashlib.sha256).hexdigest()

    async def start(self) -> None:
        """Load what identity knows of departments and its own access facts; create ``admin``."""
        await self.seed_access_copy()
        await self.credentials.create_tables()
        self.avatars = AvatarStore(self.db)
        await self.avatars.create_tables()
        self.throttle = LoginThrottle(self.db, self.secret)
        await self.throttle.create_tables()
        keys = KeyRing(self.db)
        await keys.create_tables()
        self.sealer = Sealer(registry, keys)
        async with self.db.engine.connect() as conn:
            for row in await conn.execute(select(departments_seen)):
                if not row.deleted:
                    self.known_departments.add(row.department_id)
                self.department_rights[row.department_id] = frozenset(orjson.loads(row.rights))
        await self.bootstrap_admin()

    async def seed_access_copy(self) -> None:
        """Fill this service's access copy from identity's own store.

        Other services learn access from the topic; identity has the facts in
        hand and must not wait for its own events to come back from the broker
        (after a restart, say) before it can authorise a request.
        """
        wanted = {
            StaffAccessChanged.event_type,
            ClientAccessChanged.event_type,
            SessionEnded.event_type,
        }
        after = 0
        while page := await self.store.read_all(after, 5000):
            for e in page:
                if e.type in wanted:
                    self.access.apply(registry.decode(e), e.stream_version)
            after = page[-1].position

    # ---------------------------------------------------------------- staff

    async def add_staff(
        self, actor: Actor, password: str, by: Grantor, **fields: Any
    ) -> CommandAnswer:
        staff_id = str(uuid.uuid4())
        await self.await_departments(fields.get("departments", []))

        def add(staff: Staff) -> list[DomainEvent]:
            if staff.exists:
                raise Conflict("duplicate_staff", f"staff member {staff_id} exists")
            return Staff.add(
                staff_id,
                known_departments=self.known_departments,
                department_rights=self.department_rights,
                by=by,
                **fields,
            )

        add(Staff())  # refuse early: no credential for a member the rules refuse
        await self.credentials.add(staff_id, fields["login"], "staff", password)
        try:
            return await self.decide_member(staff_id, add, actor, must_exist=False)
        except BaseException:
            await self.credentials.remove(staff_id)
            raise

    async def change_staff(
        self, actor: Actor, staff_id: str, by: Grantor, **changes: Any
    ) -> CommandAnswer:
        await self.await_departments(changes.get("departments") or [])
        return await self.decide_member(
            staff_id,
            lambda staff: staff.change(
                self.known_departments, by=by, department_rights=self.department_rights, **changes
            ),
            actor,
        )

    async def disable_staff(self, actor: Actor, staff_id: str, by: Grantor) -> CommandAnswer:
        if staff_id == actor.id:
            await self._staff(staff_id)  # an unknown member is 404 before anything else
            raise Conflict("cannot_disable_self", "staff members cannot disable themselves")
        answer = await self.decide_member(staff_id, lambda staff: staff.disable(by), actor)
        await self.end_sessions_of(staff_id, "disabled", actor)
        return answer

    async def grant(self, actor: Actor, staff_id: str, right: str, by: Grantor) -> CommandAnswer:
        return await self.decide_member(staff_id, lambda staff: staff.grant(right, by), actor)

    async def revoke(self, actor: Actor, staff_id: str, right: str, by: Grantor) -> CommandAnswer:
        return await self.decide_member(
            staff_id, lambda staff: staff.revoke(right, self.department_rights, by), actor
        )

    async def set_avatar(
        self, actor: Actor, staff_id: str, data: bytes, filename: str | None, by: Grantor
    ) -> CommandAnswer:
        avatar = check_avatar(data, filename)

        async def change(staff: Staff) -> list[DomainEvent]:
            events = staff.change_avatar(avatar.sha256, avatar.content_type, len(avatar.data), by)
            if events:
                await self.avatars.put(
                    avatar
                )  # the bytes first: the event must never point at nothing
            return events

        return await self.decide_member(staff_id, change, actor)

    async def set_staff_password(
        self,
        actor: Actor,
        staff_id: str,
        password: str,
        by: Grantor,
        keep_session: str | None = None,
    ) -> None:
        """A member's new password; it ends the member's sessions but ``keep_session``.

        The hash is written once the rules allow it and before the event: the
        fact must never claim a password the credential store does not have.
        The decision is made again on fresh state when the stream changed
        meanwhile (say, the member made full-access: then only full access may
        set it), through the kernel's one retry policy.
        """
        changed: list[bool] = []

        async def decide(staff: Staff) -> list[DomainEvent]:
            events = staff.set_password(by)
            if not changed:
                await self.credentials.change(staff_id, password)
                changed.append(True)
            return events

        await self.decide_member(staff_id, decide, actor)
        # Every other session ends: all of them when someone else set it.
        await self.end_sessions_of(staff_id, "password_changed", actor, keep=keep_session)

    async def await_departments(self, departments: list[str]) -> None:
        """Wait, a bounded time, until the copy of departments knows each of them.

        A department created a moment ago reaches identity through its topic a
        moment later: a command naming it waits for that (and for its rights,
        which travel with it) rather than answering 422. Only a department
        still unknown after ``DEPARTMENT_WAIT_SECONDS`` is "no department".
        """

        async def all_known() -> bool:
            return all(d in self.known_departments for d in departments)

        # Past the wait the decider names the unknown one (422).
        await until_known(all_known, bool, DEPARTMENT_WAIT_SECONDS)

    async def _staff(self, staff_id: str) -> tuple[Staff, StaffAccessChanged | None]:
        """The member and the access fact last published for them, from one read."""
        staff, published = await self._member(staff_id)
        if not staff.exists:
            raise NotFound(f"staff member {staff_id}")
        return staff, published

    async def _member(self, staff_id: str) -> tuple[Staff, StaffAccessChanged | None]:
        """The member as their stream says now, and the access fact last published.

        A member's stream grows with every grant and every access fact (each
        department change adds one), and folding all of it on every change
        made the handler slow and loaded the garbage collector. Events never
        change once written, so the fold of the first ``v`` events stays true:
        identity keeps it and reads only the events after ``v`` (still one
        read, so a write by a command or another replica is never missed).
        The caller gets its own copy, free to apply its decision to.
        """
        stream = staff_stream(staff_id)
        kept = self._folded.get(staff_id)
        if kept is None:
            recorded = await self.store.read_stream(stream)
            staff, published = rebuild(recorded, registry, Staff), last_access_fact(recorded)
        else:
            folded, published = kept
            recorded = await self.store.read_stream(stream, folded.version + 1)
            fold = copy.deepcopy(folded)
            # rebuild goes on from the kept fold (same decoding, and sets the version).
            staff = rebuild(recorded, registry, lambda: fold) if recorded else fold
            published = last_access_fact(recorded) or published
        latest = self._folded.get(staff_id)  # another call may have got further meanwhile
        if staff.exists and (latest is None or staff.version > latest[0].version):
            self._folded[staff_id] = (copy.deepcopy(staff), published)
            self._folded.move_to_end(staff_id)
            if len(self._folded) > MEMBERS_KEPT:
                self._folded.popitem(last=False)
        return staff, published

    async def decide_member(
        self,
        staff_id: str,
        decide: Callable[[Staff], Decision],
        actor: Actor,
        *,
        must_exist: bool = True,
        sealer: Sealer | None = None,
    ) -> CommandAnswer:
        """Load, decide, append through the kernel's ``decide_and_append`` (one retry
        policy); with the decision, the member's new access fact when it differs
        from the one last published, in the same append (atomically).

        ``must_exist``: 404 for an unknown member (a command adding one says
        False). ``sealer``: personal fields of the decision are sealed (a second
        factor's secret). Identity's own access copy applies the fact at once.
        """
        # What the round that was appended loaded and published (the last round).
        published: list[StaffAccessChanged | None] = [None]
        fact_of: list[StaffAccessChanged | None] = [None]
        after_of: list[Staff] = []

        async def loader() -> Staff:
            staff, previous = await (
                self._staff(staff_id) if must_exist else self._member(staff_id)
            )
            published[0], fact_of[0] = previous, None
            return staff

        async def deciding(staff: Staff) -> list[DomainEvent]:
            decided = decide(staff)
            events = list(await decided if inspect.isawaitable(decided) else decided)
            if not events:
                return events
            after = copy.deepcopy(staff).applied(events)
            after_of[:] = [after]
            fact = after.access_fact(self.department_rights)
            previous = published[0]
            if previous is None or _differs(previous, fact):
                fact_of[0] = fact
                events.append(fact)
            return events

        answer = await decide_and_append(
            self.store,
            registry,
            staff_stream(staff_id),
            Staff,
            deciding,
            answer_id=staff_id,
            actor=actor,
            loader=loader,
            sealer=sealer,
        )
        fact = fact_of[0]
        if answer.position and fact is not None:
            self.access.apply(fact, answer.version)  # the fact is the last event
        if answer.position and _differs_now(fact, after_of, self.department_rights):
            # A department's rights changed while this command was deciding: the
            # consumer may have looked for the department's members before this
            # member was in the access copy, so publish the member's access again.
            await self.republish_access(staff_id)
        return answer

    async def republish_access(self, staff_id: str) -> None:
        """Recompute a member's access (their departments changed) and publish it if new."""
        published: list[StaffAccessChanged | None] = [None]
        fact_of: list[StaffAccessChanged | None] = [None]

        async def loader() -> Staff:
            staff, published[0] = await self._member(staff_id)
            return staff

        def decide(staff: Staff) -> list[DomainEvent]:
            fact_of[0] = None
            if not staff.exists:
                return []
            fact = staff.access_fact(self.department_rights)
            previous = published[0]
            if previous is not None and not _differs(previous, fact):
                return []
            fact_of[0] = fact
            return [fact]

        # A command that got in first makes a conflict: the fact is recomputed.
        answer = await decide_and_append(
            self.store,
            registry,
            staff_stream(staff_id),
            Staff,
            decide,
            answer_id=staff_id,
            loader=loader,
        )
        fact = fact_of[0]
        if answer.position and fact is not None:
            self.access.apply(fact, answer.version)

    # ---------------------------------------------------------------- departments.events

    async def on_department_event(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        """Consumer handler: remember departments and re-derive their members' access."""
        change = department_change(event)
        if change is None:
            return
        department_id, deleted, rights = change
        await record_department(conn, department_id, deleted, rights)
        if deleted:
            self.known_departments.discard(department_id)
            self.department_rights[department_id] = frozenset()
        elif deleted is False:
            self.known_departments.add(department_id)
        if rights is not None:
            self.department_rights[department_id] = frozenset(rights)
        if rights is not None or deleted:
            # The table follows the store a moment behind; the access copy has
            # every member identity published a moment ago (see ``decide_member``).
            members = set(await self._members(conn, department_id)) | {
                principal_id
                for principal_id, access in self.access.by_principal.items()
                if access.kind == "staff" and department_id in access.departments
            }
            for staff_id in sorted(members):
                await self.republish_access(staff_id)

    async def _members(self, conn: AsyncConnection, department_id: str) -> list[str]:
        # The JSON text narrows the rows in SQL; parsing confirms the membership.
        rows = await conn.execute(
            select(staff_rows.c.staff_id, staff_rows.c.departments).where(
                staff_rows.c.departments.contains(f'"{department_id}"', autoescape=True)
            )
        )
        return [r.staff_id for r in rows if department_id in orjson.loads(r.departments)]

    # ---------------------------------------------------------------- sessions

    async def login(
        self,
        login: str,
        password: str,
        ip: str | None,
        new_password: str | None = None,
        otp: str | None = None,
    ) -> LoginResult:
        """Staff and client principals log in here alike; the credential says which.

        An unknown login costs what a known one does: the same lookups, argon2
        against a decoy hash, the same counting of the failure. A password
        marked ``must_change`` (the generated first admin password) logs in
        only with ``new_password``, which replaces it. A member with the
        second factor on needs ``otp`` too (a TOTP code or a recovery code,
        each accepted once); a missing or wrong one is a failed login (401
        ``otp_required`` / ``otp_invalid``), counted like a wrong password.
        """
        now = datetime.now(UTC)
        found = await self.credentials.find(login)
        subject = self.guard_of(login, found)
        pair_key, address_key = self.throttle.pair_key(login, ip), self.throttle.address_key(ip)
        pair, address = await self.throttle.states(pair_key, address_key)
        locked_until = max(
            (t for t in (pair.locked(now), address.locked(now)) if t is not None), default=None
        )
        if locked_until is not None:
            # Counted and recorded when the lock began; a refusal now is only logged.
            log.warning("security.login_refused_locked", **subject.for_log, ip=ip)
            wait = max(1, int((locked_until - now).total_seconds()) + 1)
            raise LoginRefused(429, "locked_out", "too many failed logins; try later", wait)

        async def refuse(reason: FailureReason, status: int, code: str, message: str) -> NoReturn:
            counted_pair = await self.throttle.failed(
                pair_key, now, self.max_failures, self.lock_for
            )
            counted_address = await self.throttle.failed(
                address_key,
                now,
                self.max_failures * ADDRESS_FACTOR,
                self.lock_for,
                window=self.lock_for,
            )
            events = security_events(
                pair=counted_pair,
                address=counted_address,
                now=now,
                login=subject.login,
                ip=ip,
                reason=reason,
                principal_id=subject.principal_id,
            )
            if events:
                await self._record(subject.stream, events)
            log.warning("security.login_failed", **subject.for_log, ip=ip, reason=reason)
            if newly_locked(*counted_pair, now) or newly_locked(*counted_address, now):
                log.warning("security.login_locked_out", **subject.for_log, ip=ip)
            raise LoginRefused(status, code, message)

        if not await self.credentials.matches(found, password) or found is None:
            await refuse("bad_credentials", 401, "invalid_credentials", "wrong login or password")
        assert found is not None
        principal_id = found.principal_id
        kind: PrincipalKind = "client" if found.kind == "client" else "staff"
        # Identity decides from its own store, the source of truth, not from the
        # access copy that other services keep.
        bound_ip: str | None = None
        scope: str | None = None
        if kind == "client":
            client = await load(
                self.store, registry, client_principal_stream(principal_id), ClientPrincipal
            )
            if not client.may_log_in:
                await refuse("disabled", 401, "principal_disabled", "this account is disabled")
            if "client" in self.denied_groups:
                await refuse("group_denied", 403, "group_denied", "this user group may not log in")
        else:
            staff = await load(self.store, registry, staff_stream(principal_id), Staff)
            if not staff.exists or staff.disabled:
                await refuse("disabled", 401, "principal_disabled", "this account is disabled")
            if staff.group in self.denied_groups:
                await refuse("group_denied", 403, "group_denied", "this user group may not log in")
            if not staff.ip_policy.allows(ip):
                await refuse(
                    "ip_not_allowed",
                    403,
                    "ip_not_allowed",
                    "login from this address is not allowed",
                )
            bound_ip = ip if staff.bind_session_to_ip else None
            if staff.second_factor:
                if not otp:
                    await refuse(
                        "otp_required", 401, "otp_required", "a one-time code (otp) is needed"
                    )
                assert otp is not None
                if self.second_factor is None or not await self.second_factor(principal_id, otp):
                    await refuse(
                        "otp_invalid", 401, "otp_invalid", "the one-time code is wrong or used"
                    )
            elif self.otp_required_for_full_access and staff.full_access:
                scope = SETUP_SECOND_FACTOR
        actor = Actor(id=principal_id, kind=kind)
        if found.must_change:
            if new_password is None or new_password == password:
                raise LoginRefused(
                    403,
                    "password_change_required",
                    "this password was generated: log in with new_password to replace it",
                )
            await self.set_own_password(actor, principal_id, new_password)
        await self.throttle.succeeded(pair_key)
        session_id = str(uuid.uuid4())
        lifetime = timedelta(minutes=self.settings.access_token_minutes)
        started = SessionStarted(
            session_id=session_id,
            principal_id=principal_id,
            kind=kind,
            ip=ip,
            bound_to_ip=bound_ip is not None,
            expires_at=now + lifetime,
        )
        await append(
            self.store, registry, f"session-{session_id}", [started], 0, actor=actor,
            sealer=self.sealer,
        )  # fmt: skip
        await self._record(
            subject.stream,
            [
                LoginSucceeded(
                    login=subject.login,
                    ip=ip,
                    session_id=session_id,
                    principal_id=subject.principal_id,
                )
            ],
        )
        token = issue_token(
            self.signing_key,
            principal_id=principal_id,
            kind=kind,
            session_id=session_id,
            lifetime=lifetime,
            bound_ip=bound_ip,
            scope=scope,
        )
        return LoginResult(token, principal_id, kind, session_id, scope)

    async def set_own_password(self, actor: Actor, principal_id: str, password: str) -> None:
        """A staff member's own new password (the generated first one replaced, say)."""
        await self.set_staff_password(actor, principal_id, password, Grantor(id=principal_id))

    async def check_current_password(self, actor: Actor, current: str) -> None:
        """Before ``POST /me/password`` changes anything: the caller knows the password.

        An impersonation is refused (staff do not set a client's password by
        logging in as the client).
        """
        if actor.impersonator_id is not None:
            raise Forbidden("impersonation", "not while logged in as a client", "current_password")
        found = await self.credentials.of_principal(actor.id)
        if not await self.credentials.matches(found, current):
            raise Forbidden(
                "invalid_credentials", "the current password is wrong", "current_password"
            )

    def guard_of(self, login: str, found: Credential | None) -> GuardSubject:
        """Where the lock-out count of a login lives, and how its events name it.

        Staff logins are named as they are (security analysts want them). A
        client's login is personal data and must not reach the topic, so its
        count lives under its principal id; an unknown login (a typo, a
        guess, a deleted client's) under a keyed hash of it, and log lines
        name it by that hash too: people type their password into the login
        field, and a log must never keep a password.
        """
        if found is not None and found.kind == "staff":
            return GuardSubject(f"login-{login.lower()}", login, None, {"login": login})
        if found is not None:
            client_id = found.principal_id
            return GuardSubject(
                f"login-client-{client_id}", "", client_id, {"client_id": client_id}
            )
        digest = hmac.new(
            self.secret.encode(), b"login-guard:" + login.lower().encode(), hashlib.sha256
        ).hexdigest()[:32]
        return GuardSubject(f"login-unknown-{digest}", "", None, {"login_hash": digest})

    async def _record(self, stream: str, events: list[DomainEvent]) -> None:
        """Append to a login's security log: no decision rests on it, so in any order.

        Not a load-decide-append: the lock-out is decided from the throttle
        table (``LoginThrottle``), and the log only records what was decided,
        so it appends at any version (``StreamState.ANY``) and a concurrent
        failed login never makes a conflict to retry. Addresses in it are
        sealed with the principal's key.
        """
        await append(
            self.store, registry, stream, events, 0, expected=StreamState.ANY, sealer=self.sealer
        )

    async def logout(self, actor: Actor, session_id: str) -> None:
        """End a session; ending an impersonation hands back to the staff member.

        The staff member's own session stays; ending it (logout, disabling)
        ends the impersonations started from it as well.
        """
        if actor.impersonator_id is not None:
            await self._end_session(session_id, actor.id, "impersonation_ended", actor)
            return
        await self._end_session(session_id, actor.id, "logout", actor)
        for impersonation, client_id in await self._active_sessions(
            impersonations.c.impersonator_session_id == session_id
        ):
            await self._end_session(impersonation, client_id, "impersonation_ended", actor)

    async def end_sessions_of(
        self,
        principal_id: str,
        reason: SessionEndReason,
        actor: Actor,
        keep: str | None = None,
    ) -> None:
        """End a principal's sessions (but ``keep``), and the impersonations they started."""
        for session_id, owner in await self._active_sessions(
            sessions.c.principal_id == principal_id
        ):
            if session_id != keep:
                await self._end_session(session_id, owner, reason, actor)
        for session_id, client_id in await self._active_sessions(
            impersonations.c.impersonator_id == principal_id
        ):
            await self._end_session(session_id, client_id, "impersonation_ended", actor)

    async def _active_sessions(self, which: ColumnElement[bool]) -> list[tuple[str, str]]:
        """(session id, principal id) of the active sessions that ``which`` picks."""
        if self.wait_for_position is not None:
            # Past the wait, go on with what the table has: a session it misses
            # still ends with its token's short lifetime.
            await self.wait_for_position(await self.store.head_position(), SESSIONS_WAIT_SECONDS)
        query = (
            select(sessions.c.session_id, sessions.c.principal_id)
            .select_from(
                sessions.outerjoin(
                    impersonations, impersonations.c.session_id == sessions.c.session_id
                )
            )
            .where(sessions.c.active & which)
        )
        async with self.db.engine.connect() as conn:
            return [(r.session_id, r.principal_id) for r in await conn.execute(query)]

    async def _end_session(
        self, session_id: str, principal_id: str, reason: SessionEndReason, actor: Actor
    ) -> None:
        ended = SessionEnded(session_id=session_id, principal_id=principal_id, reason=reason)
        stream = f"session-{session_id}"
        await append(
            self.store,
            registry,
            stream,
            [ended],
            await self.store.stream_version(stream),
            actor=actor,
        )
        self.access.apply_all([ended])

    # ---------------------------------------------------------------- first start

    async def bootstrap_admin(self) -> None:
        """Create ``admin`` with full access exactly once, even with replicas starting together."""
        if await self.store.stream_version(staff_stream(ADMIN_ID)):
            return
        password = self.settings_admin_password()
        events = Staff.add(
            ADMIN_ID,
            ADMIN_LOGIN,
            LocalizedName(en="Administrator", ru="Администратор"),
            None,
            None,
            [],
            set(),
            full_access=True,
            group="admin",
        )
        try:
            # A generated password has been on disk: it must be replaced at first login.
            generated = not os.environ.get("ADMIN_PASSWORD")
            await self.credentials.add(
                ADMIN_ID, ADMIN_LOGIN, "staff", password, must_change=generated
            )
        except Conflict:
            return  # another replica got here first
        system = Actor(id="system", kind="system")
        # Another replica that got here first makes the stream exist: nothing to do.
        answer = await self.decide_member(
            ADMIN_ID, lambda staff: [] if staff.exists else events, system, must_exist=False
        )
        if not answer.position:
            return
        log.info("identity.admin_created", login=ADMIN_LOGIN)

    def settings_admin_password(self) -> str:
        """``ADMIN_PASSWORD``, or one generated once and written to ``var/admin_password``."""
        given = os.environ.get("ADMIN_PASSWORD")
        if given:
            return given
        path = Path(self.settings.var_dir) / "admin_password"
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(18)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(password)
        log.info("identity.admin_password_written", path=str(path))  # the path, never the password
        return password


def last_access_fact(recorded: list[RecordedEvent]) -> StaffAccessChanged | None:
    """The access fact identity last published for a member (only that one is decoded)."""
    for event in reversed(recorded):
        if event.type == StaffAccessChanged.event_type:
            return StaffAccessChanged.model_validate(event.data)
    return None


def _differs(previous: StaffAccessChanged, current: StaffAccessChanged) -> bool:
    return previous.model_dump() != current.model_dump()


def _differs_now(
    fact: StaffAccessChanged | None,
    after: list[Staff],
    department_rights: dict[str, frozenset[str]],
) -> bool:
    """Whether the member as decided has other access with the departments' rights of now."""
    return (
        fact is not None and bool(after) and _differs(fact, after[0].access_fact(department_rights))
    )
