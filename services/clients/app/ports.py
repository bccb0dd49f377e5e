"""What the clients context needs from identity: the credential side of its clients.

Identity keeps client logins, password hashes and sessions; the clients
service hands a new client's credential over once, reports disabling, company
changes and erasure, and asks for impersonation tokens. The adapter is
``services.clients.adapters.identity_http.IdentityHttp`` (identity's internal
HTTP API); tests may put anything with these methods in its place.

Errors: ``shared.domain.aggregate.Conflict`` (``duplicate_login``, ``principal_disabled``,
...), ``DomainError`` naming the field, ``NotFound``, and ``IdentityUnavailable``
when identity cannot be reached or fails.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from shared.domain.aggregate import Unavailable


class Unchanged(enum.Enum):
    """Marks an optional value that was not given (None is a value: "no company")."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


class IdentityUnavailable(Unavailable):
    """Identity could not be reached, or failed; the command may be tried again (→ 503)."""

    def __init__(self, message: str) -> None:
        super().__init__("identity_unavailable", message)


@dataclass(frozen=True)
class Impersonation:
    """A client token issued to a staff member; events caused with it name both."""

    access_token: str = field(repr=False)  # a bearer token: never in a log line
    session_id: str
    client_id: str
    impersonator_id: str


class IdentityPort(Protocol):
    async def register(self, client_id: str, login: str, password: str) -> None:
        """Hand over a new client's credential; it can log in at identity from now on."""

    async def update(
        self,
        client_id: str,
        *,
        disabled: bool | None = None,
        company_id: str | Unchanged | None = UNCHANGED,
        company_manager: bool | None = None,
    ) -> None:
        """Disable or enable the client, or change its company (None: no company)."""

    async def change_password(self, client_id: str, password: str) -> None: ...

    async def remove(self, client_id: str) -> None:
        """Erasure: the login becomes free, every session ends (``NotFound`` if unknown)."""

    async def impersonate(
        self, client_id: str, staff_id: str, staff_session_id: str
    ) -> Impersonation: ...
