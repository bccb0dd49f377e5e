"""Dependencies of the identity API's routers: the application objects they call.

Routes declare ``app: <Name>Dep`` instead of reaching into the runtime; what
several router modules share (who grants in a staff command, a staff card
read) is here once.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import orjson
from fastapi import Depends, Request
from sqlalchemy import select

from services.identity.app.application import IdentityApplication
from services.identity.app.clients import ClientPrincipals
from services.identity.app.handlers import Identity
from services.identity.app.second_factor import SecondFactors
from services.identity.app.self_service import PasswordResets
from services.identity.projections import staff_rows
from shared.access.control import Principal
from shared.access.delegation import Grantor
from shared.http.api import composed
from shared.http.reads import one_or_404


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
# hop per request for reading an attribute.
async def application(request: Request) -> IdentityApplication:
    return cast(IdentityApplication, composed(request))


async def identity(request: Request) -> Identity:
    return (await application(request)).identity


async def client_principals(request: Request) -> ClientPrincipals:
    return (await application(request)).client_principals


async def password_resets(request: Request) -> PasswordResets:
    return (await application(request)).password_resets


async def second_factors(request: Request) -> SecondFactors:
    return (await application(request)).second_factors


IdentityDep = Annotated[Identity, Depends(identity)]
PasswordResetsDep = Annotated[PasswordResets, Depends(password_resets)]
SecondFactorsDep = Annotated[SecondFactors, Depends(second_factors)]
ClientPrincipalsDep = Annotated[ClientPrincipals, Depends(client_principals)]


def grantor(principal: Principal) -> Grantor:
    """Who hands rights on in a staff command, with what they hold now (``delegation``)."""
    return Grantor.of(principal.access, principal.id)


async def get_staff_card(request: Request, staff_id: str) -> dict[str, Any]:
    """A member's card from the staff read model, or 404."""
    db = request.app.state.runtime.db
    async with db.engine.connect() as conn:
        query = select(staff_rows.c.card).where(staff_rows.c.staff_id == staff_id)
        row = await one_or_404(conn, query, f"staff member {staff_id}")
    return card(staff_id, row.card)


def card(staff_id: str, stored: str) -> dict[str, Any]:
    """The card as the API shows it: the stored JSON fields and the id."""
    return {"id": staff_id, **orjson.loads(stored)}
