"""The companies application service: load a company, let it decide, append, then tell others.

Every company command of the API goes through ``Companies``. It loads the
``company-<id>`` stream (contacts' personal fields opened by the ``Sealer``),
lets the aggregate decide, and appends with the version it loaded and the
sealer, through the kernel's ``decide_and_append``: a concurrent change of the
same company is decided again on fresh state under the kernel's one retry
policy; a caller that names the version it saw (``expected_version``) is
checked in the decision and gets 409 ``version_conflict`` instead. Only after
the append does it act outside the store:

* a removed contact's key is destroyed (``KeyRing.destroy``), so its sealed
  name, e-mail, phone and messenger id open to nothing in every replay.
  Crashing between the append and the destruction leaves the key; a repeated
  DELETE of the contact (or of the company) destroys it then, before its 404;
* identity is told each affected client's company and manager flag
  (``IdentityPort.update``), with the state as it is after the command. A
  command that changes nothing still tells identity, so repeating an add or
  a manager change whose identity call failed (503 ``identity_not_updated``)
  repairs it. A failed call after a removal or a deletion is not repaired by
  repeating it (that is a 404): identity keeps the old company until the
  client's next company change. Only an outbox, or identity consuming
  ``clients.events``, would close that.

One company per client: the aggregate can only see its own members, so before
adding a member this layer asks the ``company_directory`` read model whether
the client is in another company, after waiting (briefly) for it to reach the
store's head. Two commands adding the same client to two companies at the same
moment can still both pass the check: the read model then lists the client in
both (``GET /companies?client_id=``), and staff remove one membership. Closing
that gap needs a reservation stream per client, which this does not have.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from sqlalchemy import select

from services.clients.domain.company import (
    Company,
    CompanyPatch,
    ContactDraft,
    ContactPatch,
    EquipmentDraft,
    EquipmentPatch,
    stream_name,
)
from services.clients.domain.events import registry
from services.clients.projections.companies import CompanyDirectory, company_members
from shared.application import until_known
from shared.application.commands import (
    CommandAnswer,
    Decision,
    append,
    check_seen,
    decide_and_append,
    load,
)
from shared.domain.aggregate import NotFound
from shared.domain.events import Actor, DomainEvent
from shared.eventstore import EventStore
from shared.names import checkpoint_name
from shared.privacy.shredding import Sealer
from shared.readmodel.database import ReadModelDB

log = structlog.get_logger(__name__)

DIRECTORY_CHECKPOINT = checkpoint_name(CompanyDirectory.name)
CATCH_UP_SECONDS = 2.0


class CompanyIdentity(Protocol):
    """What companies need of identity (``services.clients.app.ports.IdentityPort``).

    ``company_id`` and ``company_manager`` are always both given: the client's
    whole company state, so a repeated call is harmless.
    """

    async def update(
        self, client_id: str, *, company_id: str | None, company_manager: bool
    ) -> None: ...


class IdentityNotUpdated(Exception):
    """The command is recorded, but identity could not be told; repeating the command tells it."""

    def __init__(self, client_ids: list[str]) -> None:
        super().__init__(f"identity was not updated for client(s) {', '.join(client_ids)}")
        self.client_ids = client_ids


@dataclass
class Companies:
    """The companies application service."""

    store: EventStore
    db: ReadModelDB
    sealer: Sealer
    identity: CompanyIdentity
    client_exists: Callable[[str], Awaitable[bool]]

    # ---------------------------------------------------------------- the company

    async def create_company(self, actor: Actor, name: str) -> CommandAnswer:
        company_id = str(uuid.uuid4())
        events = Company.create(company_id, name)
        result = await append(self.store, registry, stream_name(company_id), events, 0, actor=actor)
        assert result is not None  # creating always writes
        return CommandAnswer.of(company_id, result)

    async def change_company(
        self,
        actor: Actor,
        company_id: str,
        patch: CompanyPatch,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        answer, _ = await self._decide(
            actor, company_id, lambda company: company.change(patch), expected_version
        )
        return answer

    async def delete_company(
        self, actor: Actor, company_id: str, expected_version: int | None = None
    ) -> CommandAnswer:
        """Members leave (identity is told), contacts are erased, then the company ends."""
        company = await self._company(company_id, expected_version)
        if company.deleted:
            await self._erase(company.removed_contacts)  # finish an interrupted deletion
        members: list[str] = []
        contacts: list[str] = []

        def delete(company: Company) -> list[DomainEvent]:
            members[:], contacts[:] = list(company.members), list(company.contacts)
            return company.delete()

        answer, company = await self._decide(actor, company_id, delete, expected_version)
        await self._erase(contacts)
        await self._tell_identity(company, members)
        return answer

    # ---------------------------------------------------------------- members

    async def add_member(
        self,
        actor: Actor,
        company_id: str,
        client_id: str,
        *,
        manager: bool = False,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        previous_manager: list[str | None] = [None]

        async def add(company: Company) -> list[DomainEvent]:
            previous_manager[0] = company.manager_id
            if client_id in company.members or not company.exists:
                return company.add_member(client_id, manager=manager)
            return company.add_member(
                client_id,
                manager=manager,
                client_exists=await self.client_exists(client_id),
                other_company=await self._other_company(client_id, company_id),
            )

        answer, company = await self._decide(actor, company_id, add, expected_version)
        await self._tell_identity(company, _present(client_id, previous_manager[0]))
        return answer

    async def remove_member(
        self, actor: Actor, company_id: str, client_id: str, expected_version: int | None = None
    ) -> CommandAnswer:
        answer, company = await self._decide(
            actor, company_id, lambda company: company.remove_member(client_id), expected_version
        )
        await self._tell_identity(company, [client_id])
        return answer

    async def forget_client(self, actor: Actor, client_id: str) -> None:
        """An erased client leaves every company it was in (identity already forgot it)."""
        await self._directory_caught_up()
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                select(company_members.c.company_id).where(company_members.c.client_id == client_id)
            )
            companies = [str(r.company_id) for r in rows]
        for company_id in companies:
            await self._decide(actor, company_id, lambda company: company.remove_member(client_id))

    async def assign_manager(
        self,
        actor: Actor,
        company_id: str,
        client_id: str | None,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        """The client manager is now ``client_id`` (a member), or nobody."""
        previous: list[str | None] = [None]

        def assign(company: Company) -> list[DomainEvent]:
            previous[0] = company.manager_id
            return company.assign_manager(client_id)

        answer, company = await self._decide(actor, company_id, assign, expected_version)
        await self._tell_identity(company, _present(client_id, previous[0]))
        return answer

    async def _other_company(self, client_id: str, company_id: str) -> str | None:
        """Another company the read model lists ``client_id`` in, once it has caught up."""
        await self._directory_caught_up()
        async with self.db.engine.connect() as conn:
            found = (
                await conn.execute(
                    select(company_members.c.company_id)
                    .where(
                        (company_members.c.client_id == client_id)
                        & (company_members.c.company_id != company_id)
                    )
                    .limit(1)
                )
            ).scalar()
        return None if found is None else str(found)

    async def _directory_caught_up(self) -> None:
        """Wait until the directory has applied what the store holds now (at most briefly).

        A member added a moment ago must count; past the deadline the check
        goes ahead with what the read model has (the race the module describes).
        """
        head = await self.store.head_position()

        async def applied() -> int:
            return (await self.db.checkpoint(DIRECTORY_CHECKPOINT)).position

        if await until_known(applied, lambda position: position >= head, CATCH_UP_SECONDS) < head:
            log.warning("companies.directory_behind", head=head)

    # ---------------------------------------------------------------- contacts

    async def add_contact(
        self,
        actor: Actor,
        company_id: str,
        draft: ContactDraft,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        contact_id = str(uuid.uuid4())
        answer, _ = await self._decide(
            actor,
            company_id,
            lambda company: company.add_contact(contact_id, draft),
            expected_version,
            contact_id,
        )
        return answer

    async def change_contact(
        self,
        actor: Actor,
        company_id: str,
        contact_id: str,
        patch: ContactPatch,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        answer, _ = await self._decide(
            actor,
            company_id,
            lambda company: company.change_contact(contact_id, patch),
            expected_version,
            contact_id,
        )
        return answer

    async def remove_contact(
        self,
        actor: Actor,
        company_id: str,
        contact_id: str,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        """Remove the contact, then destroy its key: its personal data is gone for good."""
        company = await self._company(company_id, expected_version)
        if contact_id in company.removed_contacts:
            await self._erase([contact_id])  # a retry after a crash before the destruction
        answer, _ = await self._decide(
            actor,
            company_id,
            lambda company: company.remove_contact(contact_id),
            expected_version,
            contact_id,
        )
        await self._erase([contact_id])
        return answer

    async def _erase(self, contact_ids: Iterable[str]) -> None:
        for contact_id in contact_ids:
            await self.sealer.keys.destroy(contact_id)
            log.info("companies.contact_erased", contact_id=contact_id)

    # ---------------------------------------------------------------- equipment

    async def add_equipment(
        self,
        actor: Actor,
        company_id: str,
        draft: EquipmentDraft,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        item_id = str(uuid.uuid4())
        answer, _ = await self._decide(
            actor,
            company_id,
            lambda company: company.add_equipment(item_id, draft),
            expected_version,
            item_id,
        )
        return answer

    async def change_equipment(
        self,
        actor: Actor,
        company_id: str,
        item_id: str,
        patch: EquipmentPatch,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        answer, _ = await self._decide(
            actor,
            company_id,
            lambda company: company.change_equipment(item_id, patch),
            expected_version,
            item_id,
        )
        return answer

    async def remove_equipment(
        self,
        actor: Actor,
        company_id: str,
        item_id: str,
        expected_version: int | None = None,
    ) -> CommandAnswer:
        answer, _ = await self._decide(
            actor,
            company_id,
            lambda company: company.remove_equipment(item_id),
            expected_version,
            item_id,
        )
        return answer

    # ---------------------------------------------------------------- helpers

    async def _company(self, company_id: str, expected_version: int | None) -> Company:
        """The company now (for what must happen before the decision: 404 and 409 first)."""
        company = await load(
            self.store, registry, stream_name(company_id), Company, sealer=self.sealer
        )
        _found(company, company_id, expected_version)
        return company

    async def _decide(
        self,
        actor: Actor,
        company_id: str,
        decide: Callable[[Company], Decision],
        expected_version: int | None = None,
        answer_id: str | None = None,
    ) -> tuple[CommandAnswer, Company]:
        """Load, decide, append with the sealer through the kernel's ``decide_and_append``
        (its one retry policy); the answer, and the company as the append left it."""
        decided: list[tuple[Company, Sequence[DomainEvent]]] = []

        async def checked(company: Company) -> Sequence[DomainEvent]:
            _found(company, company_id, expected_version)
            outcome = decide(company)
            events = await outcome if inspect.isawaitable(outcome) else outcome
            decided[:] = [(company, events)]  # the last round's is the one appended
            return events

        answer = await decide_and_append(
            self.store,
            registry,
            stream_name(company_id),
            Company,
            checked,
            answer_id=answer_id or company_id,
            actor=actor,
            sealer=self.sealer,
        )
        company, events = decided[0]
        return answer, company.applied(events)

    async def _tell_identity(self, company: Company, client_ids: Iterable[str]) -> None:
        """Give identity each client's company and manager flag as they now are."""
        failed: list[str] = []
        for client_id in dict.fromkeys(client_ids):
            member = company.exists and client_id in company.members
            try:
                await self.identity.update(
                    client_id,
                    company_id=company.id if member else None,
                    company_manager=member and company.manager_id == client_id,
                )
            except Exception:
                log.exception("companies.identity_not_updated", client_id=client_id)
                failed.append(client_id)
        if failed:
            raise IdentityNotUpdated(failed)


def _present(*client_ids: str | None) -> list[str]:
    return [c for c in client_ids if c is not None]


def _found(company: Company, company_id: str, expected_version: int | None) -> None:
    """404 for a company never created; 409 ``version_conflict`` when the caller names a
    version that is no longer the company's (raised from a decision: not retried). A
    deleted one passes: its commands raise NotFound themselves."""
    if not company.id:
        raise NotFound(f"company {company_id}")
    check_seen(stream_name(company_id), company, expected_version)
