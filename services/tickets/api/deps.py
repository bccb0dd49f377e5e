"""Dependencies of the tickets API's routers: the application objects they call.

Routes declare ``app: <Name>Dep`` instead of reaching into the runtime.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from services.tickets.app.application import TicketsApplication
from services.tickets.app.catalog import SupportCatalog
from services.tickets.app.handlers import Tickets
from services.tickets.app.mail_gateway import MailGateway
from shared.http.api import composed


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
# hop per request for reading an attribute.
async def application(request: Request) -> TicketsApplication:
    return cast(TicketsApplication, composed(request))


async def tickets(request: Request) -> Tickets:
    return (await application(request)).tickets


async def support_catalog(request: Request) -> SupportCatalog:
    return (await application(request)).support_catalog


TicketsDep = Annotated[Tickets, Depends(tickets)]


async def mail_gateway(request: Request) -> MailGateway:
    return (await application(request)).mail_gateway


SupportCatalogDep = Annotated[SupportCatalog, Depends(support_catalog)]
MailGatewayDep = Annotated[MailGateway, Depends(mail_gateway)]
