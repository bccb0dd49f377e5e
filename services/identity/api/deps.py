"""Dependencies of the identity API's routers: the application objects they call.

Routes declare ``app: <Name>Dep`` instead of reaching into the runtime.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from services.identity.app.application import IdentityApplication
from services.identity.app.clients import ClientPrincipals
from services.identity.app.handlers import Identity
from shared.http.api import composed


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
# hop per request for reading an attribute.
async def application(request: Request) -> IdentityApplication:
    return cast(IdentityApplication, composed(request))


async def identity(request: Request) -> Identity:
    return (await application(request)).identity


async def client_principals(request: Request) -> ClientPrincipals:
    return (await application(request)).client_principals


IdentityDep = Annotated[Identity, Depends(identity)]
ClientPrincipalsDep = Annotated[ClientPrincipals, Depends(client_principals)]
