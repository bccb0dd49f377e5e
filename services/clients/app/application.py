"""What the clients service's composition root builds: its application objects, typed.

``service.py`` makes one at start (``ServiceSpec.compose``) with ``assemble``, which
the service-layer tests call too with their own stand-ins for the ports; routers
reach its parts through ``api/deps.py``. Nothing else holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.clients.app.attachments import AttachmentStore
from services.clients.app.companies import Companies
from services.clients.app.handlers import Clients
from services.clients.app.ports import IdentityPort
from shared.domain.aggregate import NotFound
from shared.eventstore import EventStore
from shared.privacy.shredding import KeyRing
from shared.readmodel.database import ReadModelDB


@dataclass(frozen=True)
class ClientsApplication:
    clients: Clients
    companies: Companies


async def assemble(
    store: EventStore, db: ReadModelDB, identity: IdentityPort, attachments: AttachmentStore
) -> ClientsApplication:
    """Clients and companies over one store: companies learn of erased clients, and
    a company admits only clients that exist."""
    clients = Clients(
        store=store, db=db, keys=KeyRing(db), identity=identity, attachments=attachments
    )
    await clients.start()

    async def client_exists(client_id: str) -> bool:
        try:
            await clients.client(client_id)
        except NotFound:
            return False
        return True

    companies = Companies(
        store=store, db=db, sealer=clients.sealer, identity=identity, client_exists=client_exists
    )
    clients.on_erased.append(companies.forget_client)
    return ClientsApplication(clients=clients, companies=companies)
