"""Identity's application layer: load an aggregate, let it decide, append; publish access.

Whenever a member's effective access may have changed (their account, their
grants, or their departments' rights), the handler appends a fresh
``StaffAccessChanged`` to the member's stream when it differs from the last
one, so every service's access copy follows. Identity applies it to its own
copy at once (its own requests need not wait for the topic).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import hmac
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
from services.identity.projections import (
    department_change,
    departments_seen,
    impersonations,
    record_department,
    sessions,
    staff_rows,
)
from shared.access.control import (
    AccessCopy,
    ClientAccessChanged,
    PrincipalKind,
    SessionEnded,
    SessionEndReason,
    StaffAccessChanged,
    issue_token,
)
from shared.access.delegation import Grantor
from shared.application.commands import CommandAnswer, append, load, rebuild
from shared.domain import Forbidden
from shared.domain.aggregate import Conflict, NotFound
from shared.domain.events import Actor, DomainEvent, RecordedEvent
from shared.eventstore import AppendResult, ConcurrencyError, EventStore, StreamState
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
    denied_groups: frozenset[str] = frozenset()
    max_failures: int = MAX_FAILURES
    lock_for: timedelta = LOCK_FOR
    # Waits until the read models have applied a position (the runtime's
    # ``wait_for_position``): the sessions table must know a session that
    # started a moment ago before identity looks for sessions to end.
    wait_for_position: Callable[[int, float], Awaitable[bool]] | None = None
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
        events = Staff.add(
            staff_id,
            known_departments=self.known_departments,
            department_rights=self.department_rights,
            by=by,
            **fields,
        )
        await self.credentials.add(staff_id, fields["login"], "staff", password)
        try:
            result = await self._commit(None, Staff(), staff_id, events, actor)
        except BaseException:
            await self.credentials.remove(staff_id)
            raise
        assert result is not None
        return CommandAnswer.of(staff_id, result)

    async def change_staff(
        self, actor: Actor, staff_id: str, by: Grantor, **changes: Any
    ) -> CommandAnswer:
        staff, published = await self._staff(staff_id)
        await self.await_departments(changes.get("departments") or [])
        events = staff.change(
            self.known_departments, by=by, department_rights=self.department_rights, **changes
        )
        result = await self._commit(published, staff, staff_id, events, actor)
        return CommandAnswer.after(staff_id, staff.version, result)

    async def disable_staff(self, actor: Actor, staff_id: str, by: Grantor) -> CommandAnswer:
        staff, published = await self._staff(staff_id)
        if staff_id == actor.id:
            raise Conflict("cannot_disable_self", "staff members cannot disable themselves")
        result = await self._commit(published, staff, staff_id, staff.disable(by), actor)
        await self.end_sessions_of(staff_id, "disabled", actor)
        return CommandAnswer.after(staff_id, staff.version, result)

    async def grant(self, actor: Actor, staff_id: str, right: str, by: Grantor) -> CommandAnswer:
        staff, published = await self._staff(staff_id)
        result = await self._commit(published, staff, staff_id, staff.grant(right, by), actor)
        return CommandAnswer.after(staff_id, staff.version, result)

    async def revoke(self, actor: Actor, staff_id: str, right: str, by: Grantor) -> CommandAnswer:
        staff, published = await self._staff(staff_id)
        result = await self._commit(
            published, staff, staff_id, staff.revoke(right, self.department_rights, by), actor
        )
        return CommandAnswer.after(staff_id, staff.version, result)

    async def set_avatar(
        self, actor: Actor, staff_id: str, data: bytes, filename: str | None, by: Grantor
    ) -> CommandAnswer:
        avatar = check_avatar(data, filename)
        staff, published = await self._staff(staff_id)
        events = staff.change_avatar(avatar.sha256, avatar.content_type, len(avatar.data), by)
        if events:
            await self.avatars.put(avatar)  # the bytes first: the event must never point at nothing
        result = await self._commit(published, staff, staff_id, events, actor)
        return CommandAnswer.after(staff_id, staff.version, result)

    async def set_staff_password(
        self,
        actor: Actor,
        staff_id: str,
        password: str,
        by: Grantor,
        keep_session: str | None = None,
    ) -> None:
        """A member's new password; it ends the member's sessions but ``keep_session``.

        The hash is written first: the fact must never claim a password the
        credential store does not have. The stream's version is the one the
        decision was made on, so a concurrent change (say, the member made
        full-access meanwhile) is a conflict rather than a password set past it.
        """
        staff, _ = await self._staff(staff_id)
        events = staff.set_password(by)
        await self.credentials.change(staff_id, password)
        try:
            await append(
                self.store, registry, staff_stream(staff_id), events, staff.version, actor=actor
            )
        except ConcurrencyError:
            raise Conflict(
                "version_conflict", "the staff member changed meanwhile; retry"
            ) from None
        # Every other session ends: all of them when someone else set it.
        await self.end_sessions_of(staff_id, "password_changed", actor, keep=keep_session)

    async def await_departments(self, departments: list[str]) -> None:
        """Wait, a bounded time, until the copy of departments knows each of them.

        A department created a moment ago reaches identity through its topic a
        moment later: a command naming it waits for that (and for its rights,
        which travel with it) rather than answering 422. Only a department
        still unknown after ``DEPARTMENT_WAIT_SECONDS`` is "no department".
        """
        deadline = asyncio.get_running_loop().time() + DEPARTMENT_WAIT_SECONDS
        while any(d not in self.known_departments for d in departments):
            if asyncio.get_running_loop().time() >= deadline:
                return  # the decider names the unknown one (422)
            await asyncio.sleep(0.02)

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

    async def _commit(
        self,
        previous: StaffAccessChanged | None,
        staff: Staff,
        staff_id: str,
        events: list[DomainEvent],
        actor: Actor,
    ) -> AppendResult | None:
        """Append the decision and, when access changed, the new access fact, atomically."""
        if not events:
            return None
        loaded = staff.version
        staff.applied(events)
        fact = staff.access_fact(self.department_rights)
        if previous is None or _differs(previous, fact):
            events = [*events, fact]
        try:
            result = await append(
                self.store, registry, staff_stream(staff_id), events, loaded, actor=actor
            )
        except ConcurrencyError:
            raise Conflict(
                "version_conflict", "the staff member changed meanwhile; retry"
            ) from None
        if fact in events:
            self.access.apply(fact, result.stream_version if result else None)  # the last event
        if _differs(fact, staff.access_fact(self.department_rights)):
            # A department's rights changed while this command was deciding: the
            # consumer may have looked for the department's members before this
            # member was in the access copy, so publish the member's access again.
            await self.republish_access(staff_id)
        return result

    async def republish_access(self, staff_id: str) -> None:
        """Recompute a member's access (their departments changed) and publish it if new."""
        staff, previous = await self._member(staff_id)
        if not staff.exists:
            return
        fact = staff.access_fact(self.department_rights)
        if previous is not None and not _differs(previous, fact):
            return
        try:
            result = await append(
                self.store, registry, staff_stream(staff_id), [fact], staff.version
            )
        except ConcurrencyError:
            await self.republish_access(staff_id)  # a command got in first: recompute
            return
        self.access.apply(fact, result.stream_version if result else None)

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
            # every member identity published a moment ago (see ``_commit``).
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
        self, login: str, password: str, ip: str | None, new_password: str | None = None
    ) -> LoginResult:
        """Staff and client principals log in here alike; the credential says which.

        An unknown login costs what a known one does: the same lookups, argon2
        against a decoy hash, the same counting of the failure. A password
        marked ``must_change`` (the generated first admin password) logs in
        only with ``new_password``, which replaces it.
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
        await append(self.store, registry, f"session-{session_id}", [started], 0, actor=actor)
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
        )
        return LoginResult(token, principal_id, kind, session_id)

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
        guess, a deleted client's) under a keyed hash of it.
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
        return GuardSubject(f"login-unknown-{digest}", "", None, {"login": login})

    async def _record(self, stream: str, events: list[DomainEvent]) -> None:
        """Append to a login's security log: no decision rests on it, so in any order."""
        await self.store.append(stream, [registry.encode(e) for e in events], StreamState.ANY)

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
        staff = Staff()
        try:
            await self._commit(None, staff, ADMIN_ID, events, Actor(id="system", kind="system"))
        except (Conflict, ConcurrencyError):
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
