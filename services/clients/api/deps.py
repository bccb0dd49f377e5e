"""Dependencies of the clients API's routers: the application objects they call,
and the one rule for reading a client's own things.

Routes declare ``app: <Name>Dep`` instead of reaching into the runtime.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from services.clients.app.application import ClientsApplication
from services.clients.app.companies import Companies
from services.clients.app.handlers import Clients
from shared.access.control import Principal
from shared.http.api import ApiError, ExpectedVersion, composed
from shared.http.reads import not_found

__all__ = ["ClientsDep", "CompaniesDep", "ExpectedVersion", "may_read_client"]


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
# hop per request for reading an attribute.
async def application(request: Request) -> ClientsApplication:
    return cast(ClientsApplication, composed(request))


async def clients(request: Request) -> Clients:
    return (await application(request)).clients


async def companies(request: Request) -> Companies:
    return (await application(request)).companies


ClientsDep = Annotated[Clients, Depends(clients)]
CompaniesDep = Annotated[Companies, Depends(companies)]


def may_read_client(principal: Principal, client_id: str) -> None:
    """Staff with ``clients.view``, or the client themself; 404 to any other client
    (a client does not learn which other clients exist)."""
    if principal.kind == "client":
        if principal.id != client_id:
            raise not_found(f"client {client_id}")
    elif not principal.access.has("clients.view"):
        raise ApiError(403, "forbidden", "the right 'clients.view' is required")
