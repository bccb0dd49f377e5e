"""How the clients service plugs into the kernel: routers, projections, consumers."""

from pydantic_settings import BaseSettings

import services.clients as package
from services.clients.adapters.identity_http import IdentityHttp
from services.clients.api import router
from services.clients.api.companies import router as companies_router
from services.clients.api.internal import router as internal_router
from services.clients.app.attachments import AttachmentStore
from services.clients.app.companies import Companies
from services.clients.app.handlers import Clients
from services.clients.projections import (
    ClientDirectory,
    record_staff_name,
    staff_metadata,
    staff_names,
)
from services.clients.projections.companies import company_projections
from shared.copies import TopicCopy
from shared.domain import NotFound
from shared.projections import Projection
from shared.service import ConsumerSpec, ServiceRuntime, ServiceSpec
from shared.shredding import KeyRing


class ClientsSettings(BaseSettings):
    """The clients service's own options (environment variables of the same name)."""

    # Identity's base URL: client credentials and impersonation go there.
    identity_url: str = "http://127.0.0.1:8001"


async def start(runtime: ServiceRuntime) -> None:
    """Build the application service; follow identity (staff names) and the notifier."""
    assert runtime.store is not None and runtime.db is not None
    secret = runtime.settings.jwt_secret
    assert secret is not None
    await runtime.db.create_tables(staff_metadata)
    identity = IdentityHttp(ClientsSettings().identity_url, secret.get_secret_value())
    clients = Clients(
        store=runtime.store,
        db=runtime.db,
        keys=KeyRing(runtime.db),
        identity=identity,
        attachments=AttachmentStore(runtime.db),
    )
    await clients.start()

    async def client_exists(client_id: str) -> bool:
        try:
            await clients.client(client_id)
        except NotFound:
            return False
        return True

    runtime.extensions["clients"] = clients
    companies = Companies(
        store=runtime.store,
        db=runtime.db,
        sealer=clients.sealer,
        identity=identity,
        client_exists=client_exists,
    )
    clients.on_erased.append(companies.forget_client)
    runtime.extensions["companies"] = companies
    runtime.add_consumer(ConsumerSpec("staff-names", ["identity"], record_staff_name))
    runtime.add_consumer(ConsumerSpec("deadlines", ["notifier"], clients.on_notifier_event))


def projections() -> list[Projection]:
    """The read models this service keeps (besides the kernel's event counts)."""
    return [ClientDirectory(), *company_projections()]


SPEC = ServiceSpec(
    name="clients",
    title="Clients service",
    description=package.__doc__ or "",
    routers=[router, companies_router, internal_router],
    projections=projections,
    on_start=start,
    copies=(TopicCopy("staff_names", ("identity",), (staff_names,), record_staff_name),),
)
