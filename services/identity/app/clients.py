"""Client principals: what the clients service asks of identity over its internal API.

The clients context owns clients; it hands identity a new client's login and
password once (credential handover), tells it when the client is disabled,
moves between companies or is erased, and asks it for impersonation tokens.
Identity keeps the hash in its credential table and publishes only
``ClientAccessChanged`` facts without the login, so no client login or
secret reaches ``identity.events``.

Every decision goes through the kernel's ``decide_and_append`` (one conflict
retry policy); a password change is a fact appended at any version, since
nothing about it depends on the principal's state.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.identity.app.handlers import Identity, staff_stream
from services.identity.domain.client_principal import (
    UNCHANGED,
    ClientPrincipal,
    Unchanged,
    client_principal_stream,
)
from services.identity.domain.events import PasswordChanged, SessionStarted, registry
from services.identity.domain.staff import Staff
from shared.access.control import ClientAccessChanged, issue_token
from shared.application.commands import CommandAnswer, append, decide_and_append, load
from shared.domain.aggregate import Conflict, NotFound
from shared.domain.events import Actor, DomainEvent
from shared.eventstore import StreamState


@dataclass(frozen=True)
class Impersonation:
    token: str
    session_id: str
    client_id: str
    impersonator_id: str


@dataclass
class ClientPrincipals:
    """Commands on client principals; sessions and tokens go through ``Identity``."""

    identity: Identity

    async def register(
        self, actor: Actor, client_id: str, login: str, password: str
    ) -> CommandAnswer:
        """The credential first, then the events; a refusal takes the credential back.

        A client id registered already (or meanwhile) is 409 ``duplicate_principal``.
        """
        credentials = self.identity.credentials
        principal = await self._load(client_id)
        principal.register(client_id, login)  # refuse early: no hash for a refused id
        await credentials.add(client_id, login, "client", password)
        try:
            return await self._decide(
                actor, client_id, lambda p: p.register(client_id, login), present=False
            )
        except BaseException:
            # No event, no credential: the clients service may simply try again.
            await credentials.remove(client_id)
            raise

    async def change(
        self,
        actor: Actor,
        client_id: str,
        *,
        disabled: bool | None = None,
        company_id: str | Unchanged | None = UNCHANGED,
        company_manager: bool | None = None,
    ) -> CommandAnswer:
        """Disabling ends the client's sessions (only when this command disabled it)."""
        loaded: list[ClientPrincipal] = []

        def decide(principal: ClientPrincipal) -> list[DomainEvent]:
            loaded[:] = [principal]
            return principal.change(
                disabled=disabled, company_id=company_id, company_manager=company_manager
            )

        answer = await self._decide(actor, client_id, decide)
        if answer.position and disabled and not loaded[0].disabled:
            await self.identity.end_sessions_of(client_id, "disabled", actor)
        return answer

    async def change_password(
        self, actor: Actor, client_id: str, password: str, keep_session: str | None = None
    ) -> CommandAnswer:
        """A client's new password; every session of the client but ``keep_session`` ends."""
        principal = await self._present(client_id)
        await self.identity.credentials.change(client_id, password)
        # A fact whatever else happens to the stream meanwhile (nothing is decided
        # on the principal's state): no version check, so no conflict to retry.
        result = await append(
            self.identity.store,
            registry,
            client_principal_stream(client_id),
            [PasswordChanged(principal_id=client_id, set_by=actor.id)],
            principal.version,
            actor=actor,
            expected=StreamState.ANY,
        )
        assert result is not None
        await self.identity.end_sessions_of(client_id, "password_changed", actor, keep=keep_session)
        return CommandAnswer.of(principal.id, result)

    async def remove(self, actor: Actor, client_id: str) -> CommandAnswer:
        """Erasure: the login becomes free and every session ends. Repeating it is harmless.

        The events come first: should deleting the credential fail, the
        principal is already refused at login, and a repeat finishes the job.
        """

        def remove(principal: ClientPrincipal) -> list[DomainEvent]:
            if not principal.registered:
                raise NotFound(f"client principal {client_id}")
            return principal.remove()

        answer = await self._decide(actor, client_id, remove, present=False)
        await self.identity.credentials.remove(client_id)
        await self.identity.end_sessions_of(client_id, "disabled", actor)
        # The addresses it logged in from (sealed with its key) become unreadable.
        await self.identity.sealer.keys.destroy(client_id)
        return answer

    async def impersonate(
        self, client_id: str, staff_id: str, staff_session_id: str
    ) -> Impersonation:
        """A client session opened by a staff member; its events name both."""
        principal = await self._present(client_id)
        principal.check_impersonable()
        await self._check_impersonator(staff_id, staff_session_id)
        identity = self.identity
        now = datetime.now(UTC)
        lifetime = timedelta(minutes=identity.settings.access_token_minutes)
        session_id = str(uuid.uuid4())
        started = SessionStarted(
            session_id=session_id,
            principal_id=client_id,
            kind="client",
            ip=None,
            bound_to_ip=False,
            impersonator_id=staff_id,
            impersonator_session_id=staff_session_id,
            expires_at=now + lifetime,
        )
        actor = Actor(id=client_id, kind="client", impersonator_id=staff_id)
        await append(
            identity.store, registry, f"session-{session_id}", [started], 0, actor=actor,
            sealer=identity.sealer,
        )  # fmt: skip
        token = issue_token(
            identity.signing_key,
            principal_id=client_id,
            kind="client",
            session_id=session_id,
            lifetime=lifetime,
            impersonator_id=staff_id,
            now=now,
        )
        return Impersonation(token, session_id, client_id, staff_id)

    async def _check_impersonator(self, staff_id: str, staff_session_id: str) -> None:
        """The staff member must be active and still in the session they asked from.

        The clients service has checked their right already; identity checks
        what only it knows for sure, from its own store and session facts.
        """
        staff = await load(self.identity.store, registry, staff_stream(staff_id), Staff)
        if not staff.exists or staff.disabled:
            raise Conflict("impersonator_not_allowed", f"staff member {staff_id} may not act")
        if staff_session_id in self.identity.access.ended:
            raise Conflict("impersonator_session_ended", "the staff member's session has ended")

    async def _load(self, client_id: str) -> ClientPrincipal:
        stream = client_principal_stream(client_id)
        return await load(self.identity.store, registry, stream, ClientPrincipal)

    async def _present(self, client_id: str) -> ClientPrincipal:
        principal = await self._load(client_id)
        if not principal.registered or principal.removed:
            raise NotFound(f"client principal {client_id}")
        return principal

    async def _decide(
        self,
        actor: Actor,
        client_id: str,
        decide: Callable[[ClientPrincipal], list[DomainEvent]],
        *,
        present: bool = True,
    ) -> CommandAnswer:
        """Load, decide, append through the kernel's one retry policy
        (``decide_and_append``); identity's own access copy follows at once.

        ``present``: the principal must be registered and not removed (404).
        """
        decided: list[DomainEvent] = []
        stream = client_principal_stream(client_id)

        async def loader() -> ClientPrincipal:
            return await (self._present(client_id) if present else self._load(client_id))

        def deciding(principal: ClientPrincipal) -> list[DomainEvent]:
            decided[:] = decide(principal)  # the last round's decision is what was appended
            return decided

        answer = await decide_and_append(
            self.identity.store,
            registry,
            stream,
            ClientPrincipal,
            deciding,
            answer_id=client_id,
            actor=actor,
            loader=loader,
        )
        if answer.position:
            first = answer.version - len(decided) + 1
            for i, event in enumerate(decided):
                if isinstance(event, ClientAccessChanged):
                    self.identity.access.apply(event, first + i)
        return answer
