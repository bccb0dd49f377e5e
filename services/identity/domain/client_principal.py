"""A client principal: the side of a client that logs in (stream ``client-principal-<id>``).

The clients context owns the client (card, company, personal data); identity
owns only what authentication needs: that the principal exists, whether it is
disabled or removed, and its company membership, all of it published as
``ClientAccessChanged`` (which is the aggregate's state: each one carries it
whole). The login and the hash stay in the credential table; nothing here is
personal data.
"""

from __future__ import annotations

import enum
import re

from services.identity.domain.events import ClientPrincipalRegistered, ClientPrincipalRemoved
from shared.access.control import ClientAccessChanged
from shared.domain.aggregate import Aggregate, Conflict, DomainError, NotFound
from shared.domain.events import DomainEvent

# What the credential table can hold; the clients context applies its own,
# stricter rule before it hands a login over.
CLIENT_LOGIN = re.compile(r"^[\x21-\x7e]{1,64}$")


class Unchanged(enum.Enum):
    """Marks an optional value that was not given (None is a value: "no company")."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


def client_principal_stream(client_id: str) -> str:
    return f"client-principal-{client_id}"


def check_client_login(login: str) -> None:
    if not CLIENT_LOGIN.match(login):
        raise DomainError("login", "1 to 64 printable ASCII characters without spaces")


class ClientPrincipal(Aggregate):
    handles = frozenset(
        {
            ClientPrincipalRegistered.event_type,
            ClientPrincipalRemoved.event_type,
            ClientAccessChanged.event_type,
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self.id = ""
        self.removed = False
        self.disabled = False
        self.company_id: str | None = None
        self.company_manager = False

    @property
    def registered(self) -> bool:
        return bool(self.id)

    @property
    def may_log_in(self) -> bool:
        return self.registered and not self.removed and not self.disabled

    # ------------------------------------------------------------ commands

    def register(self, client_id: str, login: str) -> list[DomainEvent]:
        if self.registered:
            raise Conflict("duplicate_principal", f"client principal {client_id} exists")
        check_client_login(login)
        return [
            ClientPrincipalRegistered(client_id=client_id),
            ClientAccessChanged(client_id=client_id, disabled=False),
        ]

    def change(
        self,
        *,
        disabled: bool | None = None,
        company_id: str | Unchanged | None = UNCHANGED,
        company_manager: bool | None = None,
    ) -> list[DomainEvent]:
        """A new access fact when something differs; nothing otherwise."""
        self._require_present()
        fact = ClientAccessChanged(
            client_id=self.id,
            disabled=self.disabled if disabled is None else disabled,
            company_id=self.company_id if isinstance(company_id, Unchanged) else company_id,
            company_manager=self.company_manager if company_manager is None else company_manager,
        )
        return [] if fact.model_dump() == self.access_fact().model_dump() else [fact]

    def remove(self) -> list[DomainEvent]:
        """Erasure; repeating it decides nothing."""
        if not self.registered:
            raise NotFound("client principal")
        if self.removed:
            return []
        return [
            ClientPrincipalRemoved(client_id=self.id),
            ClientAccessChanged(
                client_id=self.id,
                disabled=True,
                company_id=self.company_id,
                company_manager=self.company_manager,
            ),
        ]

    def check_impersonable(self) -> None:
        self._require_present()
        if self.disabled:
            raise Conflict("principal_disabled", f"client {self.id} is disabled")

    def _require_present(self) -> None:
        if not self.registered or self.removed:
            raise NotFound("client principal")

    # ------------------------------------------------------------ state

    def access_fact(self) -> ClientAccessChanged:
        return ClientAccessChanged(
            client_id=self.id,
            disabled=self.disabled,
            company_id=self.company_id,
            company_manager=self.company_manager,
        )

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, ClientPrincipalRegistered):
            self.id = event.client_id
        elif isinstance(event, ClientPrincipalRemoved):
            self.removed = True
        elif isinstance(event, ClientAccessChanged):
            self.disabled = event.disabled
            self.company_id = event.company_id
            self.company_manager = event.company_manager
