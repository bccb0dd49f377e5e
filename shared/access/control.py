"""Access control in every service, without calling identity per request (DESIGN §6).

Identity publishes, on ``identity.events``, the facts every other service needs
to authorise a request (the *published language* of access):

* ``StaffAccessChanged`` / ``ClientAccessChanged`` – a principal's effective
  rights, full access, disabled flag and IP policy, whenever any of them changes
  (a copy never lets a member without full access use a function that manages
  rights, ``shared.domain.rights.FULL_ACCESS_ONLY``, whatever a fact lists);
* ``SessionEnded`` – a session ended (logout, disable, lock), so its tokens stop
  working everywhere.

Departments publishes ``DepartmentRightsChanged`` in the same way; identity
turns it into its members' ``StaffAccessChanged``.

Each service keeps a local copy (``AccessCopy``: a table for restarts, dicts for
speed), fed by an ``AccessFeed`` (``shared.access.feed``: every partition, in
every replica). ``Authorizer`` checks a signed token plus that copy: 401
without a valid token or session, 403 without the right or from an address
the principal may not use.

Tokens are EdDSA (Ed25519) JWTs: identity alone holds the private key and
issues them; every service verifies with identity's public key
(``shared.access.keys``). A token signed with any other key, or with another
algorithm (the HS256 of old, ``none``), is refused. The copy applies only the
facts identity signed (``shared.messaging.signatures``, checked by the feed).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel
from sqlalchemy import Boolean, Column, MetaData, String, Table, Text, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain import rights as rights_catalogue
from shared.domain.events import Actor, DomainEvent, EventRegistry, RecordedEvent
from shared.readmodel.database import upsert

registry = EventRegistry()

PrincipalKind = Literal["staff", "client"]
SessionEndReason = Literal[
    "logout", "disabled", "expired", "replaced", "impersonation_ended", "password_changed"
]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpPolicy(BaseModel):
    """Where a principal may log in and work from: anywhere, or a list of addresses/CIDRs."""

    mode: Literal["any", "list"] = "any"
    allowed: list[str] = []

    def networks(self) -> tuple[Network, ...]:
        return tuple(ipaddress.ip_network(a, strict=False) for a in self.allowed)

    def allows(self, address: str | None) -> bool:
        """May a principal with this policy connect from ``address``?"""
        if self.mode == "any":
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in network for network in self.networks())


@registry.register
class StaffAccessChanged(DomainEvent):
    """Everything a service needs to authorise this staff member, as it is now."""

    event_type = "StaffAccessChanged"
    staff_id: str
    login: str
    disabled: bool
    full_access: bool
    rights: list[str]
    departments: list[str]
    ip_policy: IpPolicy
    bind_session_to_ip: bool
    # Where each right comes from: "full_access", "individual", "department:<id>".
    sources: dict[str, list[str]] = {}


@registry.register
class ClientAccessChanged(DomainEvent):
    """A client principal's access (clients have no staff rights; they act on their own data)."""

    event_type = "ClientAccessChanged"
    client_id: str
    # Identity leaves it empty: a client's login is personal data and stays off the topic.
    login: str = ""
    disabled: bool
    company_id: str | None = None
    company_manager: bool = False


@registry.register
class DepartmentRightsChanged(DomainEvent):
    """Published by departments: a department's effective rights now (expanded), or its deletion.

    Identity derives its members' access from these facts, so the rule that
    turns enabled sections and functions into rights lives only in departments.
    """

    event_type = "DepartmentRightsChanged"
    department_id: str
    rights: list[str]
    deleted: bool = False


@registry.register
class SessionEnded(DomainEvent):
    """A session ended; every token issued for it is refused from now on."""

    event_type = "SessionEnded"
    session_id: str
    principal_id: str
    reason: SessionEndReason


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says."""

    principal_id: str
    kind: PrincipalKind
    session_id: str
    impersonator_id: str | None
    bound_ip: str | None
    expires_at: datetime
    # A session limited to one purpose (``SETUP_SECOND_FACTOR``); None: a full session.
    scope: str | None = None


# The scope of a full-access member's session while their second factor is
# mandatory and not set up yet: only the routes that set it up take it.
SETUP_SECOND_FACTOR = "second_factor_setup"


class TokenError(Exception):
    """The token is missing, malformed, forged or expired."""


# The one algorithm accepted: PyJWT refuses a token whose header names another
# (HS256 signed with a public key as the secret, "none"), whatever the key.
ALGORITHM = "EdDSA"


def issue_token(
    key: Ed25519PrivateKey,
    *,
    principal_id: str,
    kind: PrincipalKind,
    session_id: str,
    lifetime: timedelta,
    impersonator_id: str | None = None,
    bound_ip: str | None = None,
    now: datetime | None = None,
    scope: str | None = None,
) -> str:
    """A signed, short-lived access token for a session (identity issues them)."""
    issued = now or datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": principal_id,
        "knd": kind,
        "sid": session_id,
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
    }
    if impersonator_id:
        claims["imp"] = impersonator_id
    if bound_ip:
        claims["ip"] = bound_ip
    if scope:
        claims["scp"] = scope
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify_token(key: Ed25519PublicKey, token: str) -> Claims:
    """The claims of a valid, unexpired token signed by identity; ``TokenError`` otherwise."""
    claims = _verified(key.public_bytes_raw(), token)
    if claims.expires_at <= datetime.now(UTC):
        raise TokenError("ExpiredSignatureError")
    return claims


@functools.lru_cache(maxsize=4096)
def _verified(public: bytes, token: str) -> Claims:
    """Signature and claims checked once per token (a client sends the same one on every
    request until it expires); only valid tokens are kept, and expiry is checked per use."""
    try:
        raw = jwt.decode(
            token,
            # Keyed by the raw bytes: key objects are not hashable, and the cache is per key.
            Ed25519PublicKey.from_public_bytes(public),
            algorithms=[ALGORITHM],
            options={"require": ["sub", "sid", "exp"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(type(exc).__name__) from None
    kind = raw.get("knd")
    if kind not in ("staff", "client"):
        raise TokenError("unknown principal kind")
    return Claims(
        principal_id=str(raw["sub"]),
        kind=kind,
        session_id=str(raw["sid"]),
        impersonator_id=raw.get("imp"),
        bound_ip=raw.get("ip"),
        expires_at=datetime.fromtimestamp(int(raw["exp"]), UTC),
        scope=raw.get("scp"),
    )


# ---------------------------------------------------------------- the local copy

access_metadata = MetaData()

principals = Table(
    "access_principals",
    access_metadata,
    Column("principal_id", String(64), primary_key=True),
    Column("access", Text, nullable=False),  # the last *AccessChanged payload, as JSON
)

ended_sessions = Table(
    "access_ended_sessions",
    access_metadata,
    Column("session_id", String(64), primary_key=True),
    Column("principal_id", String(64), nullable=False),
    Column("ended", Boolean, nullable=False, default=True),
)


@dataclass(frozen=True, slots=True)
class Access:
    """One principal's access, ready for fast checks."""

    principal_id: str
    kind: PrincipalKind
    login: str
    disabled: bool
    full_access: bool = False
    rights: frozenset[str] = frozenset()
    departments: tuple[str, ...] = ()
    networks: tuple[Network, ...] | None = None  # None: any address
    bind_session_to_ip: bool = False
    company_id: str | None = None
    company_manager: bool = False

    def has(self, right: str) -> bool:
        return self.full_access or right in self.rights

    def may_connect_from(self, address: str | None) -> bool:
        if self.networks is None:
            return True
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


def access_from_event(event: DomainEvent) -> Access:
    if isinstance(event, StaffAccessChanged):
        return Access(
            principal_id=event.staff_id,
            kind="staff",
            login=event.login,
            disabled=event.disabled,
            full_access=event.full_access,
            # The functions that manage rights are used by full-access staff only:
            # an older fact may still list one for a member without full access.
            rights=rights_catalogue.usable(event.rights, event.full_access),
            departments=tuple(event.departments),
            networks=None if event.ip_policy.mode == "any" else event.ip_policy.networks(),
            bind_session_to_ip=event.bind_session_to_ip,
        )
    if isinstance(event, ClientAccessChanged):
        return Access(
            principal_id=event.client_id,
            kind="client",
            login=event.login,
            disabled=event.disabled,
            company_id=event.company_id,
            company_manager=event.company_manager,
        )
    raise TypeError(f"not an access event: {type(event).__name__}")


@dataclass
class AccessCopy:
    """This service's copy of who may do what: dicts in memory, rows for restarts."""

    by_principal: dict[str, Access] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    # Per principal, the stream version of the fact the dicts hold (when known).
    # A principal's facts are all on its own stream, so a fact that arrives late
    # (identity applies its own at once, then reads them back from the topic)
    # never puts an older state back.
    versions: dict[str, int] = field(default_factory=dict)

    async def load(self, conn: AsyncConnection) -> None:
        """Fill the dicts from the table (at start-up)."""
        for row in await conn.execute(select(principals.c.access)):
            event, version = _decode_access(row[0])
            principal_id = _principal_of(event)
            self.by_principal[principal_id] = access_from_event(event)
            if version is not None:
                self.versions[principal_id] = version
        self.ended.update(r[0] for r in await conn.execute(select(ended_sessions.c.session_id)))

    async def handle(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        """Keep the rows (in the caller's transaction) and the dicts for one event.

        Every access event carries the principal's whole current state, not a
        difference, so applying one again, or an older one before the newer
        ones again, ends in the same state.
        """
        payload = self.decode(event)
        if payload is not None:
            await self.store(conn, payload, event.stream_version)
            self.apply(payload, event.stream_version)

    @staticmethod
    def decode(event: RecordedEvent) -> DomainEvent | None:
        """The access fact in ``event``; None for every other event of the topic."""
        if event.type not in registry.models():
            return None
        payload = registry.decode(event)
        if isinstance(payload, DepartmentRightsChanged):
            return None  # identity folds these into StaffAccessChanged
        return payload

    @staticmethod
    async def store(
        conn: AsyncConnection, payload: DomainEvent, version: int | None = None
    ) -> None:
        """The rows a restart loads ``payload`` from; ``version``: its stream version.

        The row keeps the version with the fact and is never replaced by an older
        one: a real but old fact produced onto the topic again (its signature is
        still valid) cannot bring back rights taken away since, even after a restart.
        """
        if isinstance(payload, SessionEnded):
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            await conn.execute(
                insert(ended_sessions)
                .values(session_id=payload.session_id, principal_id=payload.principal_id)
                .on_conflict_do_nothing()
            )
            return
        principal_id = _principal_of(payload)
        if version is not None:
            held = (
                await conn.execute(
                    select(principals.c.access).where(principals.c.principal_id == principal_id)
                )
            ).scalar()
            held_version = None if held is None else _decode_access(held)[1]
            if held_version is not None and held_version > version:
                return
        stored = orjson.dumps(
            {
                "type": payload.event_type,
                "data": payload.model_dump(mode="json"),
                "version": version,
            }
        ).decode()
        await upsert(conn, principals, {"principal_id": principal_id, "access": stored})

    def apply(self, payload: DomainEvent, version: int | None = None) -> None:
        """The dicts, for one access fact; ``version``: its stream version, when known."""
        if isinstance(payload, SessionEnded):
            self.ended.add(payload.session_id)
        elif not isinstance(payload, DepartmentRightsChanged):
            principal_id = _principal_of(payload)
            if version is not None:
                if version < self.versions.get(principal_id, 0):
                    return
                self.versions[principal_id] = version
            self.by_principal[principal_id] = access_from_event(payload)

    def apply_all(self, events: Iterable[DomainEvent]) -> None:
        """Fill from payloads directly (identity's own copy, benchmarks)."""
        for event in events:
            self.apply(event)


def _principal_of(event: DomainEvent) -> str:
    if isinstance(event, StaffAccessChanged):
        return event.staff_id
    if isinstance(event, ClientAccessChanged):
        return event.client_id
    raise TypeError(type(event).__name__)


def _decode_access(stored: str) -> tuple[DomainEvent, int | None]:
    """A stored fact and its stream version (None in rows written before versions were kept)."""
    raw = orjson.loads(stored)
    version = raw.get("version")
    event = registry.model(raw["type"]).model_validate(raw["data"])
    return event, int(version) if version is not None else None


# ---------------------------------------------------------------- the check


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request, once authorised."""

    id: str
    kind: PrincipalKind
    session_id: str
    impersonator_id: str | None
    access: Access
    scope: str | None = None  # see ``Claims.scope``

    @property
    def actor(self) -> Actor:
        """Who the events this principal causes name (and who is behind an impersonation)."""
        return Actor(id=self.id, kind=self.kind, impersonator_id=self.impersonator_id)


class Denied(Exception):
    """Why a request is refused: ``status`` 401 or 403 and an API error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Authorizer:
    """Verifies a token and checks a right against the local access copy; no I/O."""

    def __init__(self, key: Ed25519PublicKey, copy: AccessCopy) -> None:
        self.key = key
        self.copy = copy

    def authenticate(self, token: str | None, address: str | None) -> Principal:
        """The principal behind a token, or ``Denied`` (401, or 403 for the IP policy)."""
        if not token:
            raise Denied(401, "unauthorized", "a bearer token is required")
        try:
            claims = verify_token(self.key, token)
        except TokenError:
            raise Denied(401, "invalid_token", "the token is invalid or expired") from None
        if claims.session_id in self.copy.ended:
            raise Denied(401, "session_ended", "this session has ended; log in again")
        access = self.copy.by_principal.get(claims.principal_id)
        if access is None or access.kind != claims.kind:
            raise Denied(401, "unknown_principal", "this principal is not known (yet)")
        if access.disabled:
            raise Denied(401, "principal_disabled", "this account is disabled")
        if claims.bound_ip is not None and claims.bound_ip != address:
            raise Denied(401, "session_ip_mismatch", "this session is bound to another address")
        if not access.may_connect_from(address):
            raise Denied(403, "ip_not_allowed", "access from this address is not allowed")
        return Principal(
            id=claims.principal_id,
            kind=claims.kind,
            session_id=claims.session_id,
            impersonator_id=claims.impersonator_id,
            access=access,
            scope=claims.scope,
        )

    def authorize(
        self,
        token: str | None,
        address: str | None,
        right: str | None,
        scope: str | None = None,
    ) -> Principal:
        """``authenticate`` plus the right (None: any authenticated principal).

        A limited session (a token with a scope) passes only where ``scope`` names
        its scope: 403 ``second_factor_required`` everywhere else.
        """
        principal = self.authenticate(token, address)
        if principal.scope is not None and principal.scope != scope:
            raise Denied(
                403,
                "second_factor_required",
                "set up the second factor first (POST /me/2fa, then /me/2fa/confirm)",
            )
        if right is not None and not principal.access.has(right):
            raise Denied(403, "forbidden", f"the right {right!r} is required")
        return principal

    def allowed(self, principal_id: str, right: str) -> bool:
        """The bare permission check (what the benchmark measures)."""
        access = self.copy.by_principal.get(principal_id)
        return access is not None and not access.disabled and access.has(right)
