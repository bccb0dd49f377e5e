"""Dependencies of the clients API's routers: the application objects they call.

Routes declare ``app: <Name>Dep`` instead of reaching into the runtime.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from services.clients.app.application import ClientsApplication
from services.clients.app.companies import Companies
from services.clients.app.handlers import Clients
from shared.http.api import composed


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
