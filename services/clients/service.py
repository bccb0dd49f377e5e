"""How the clients service plugs into the kernel: routers, projections, consumers."""

import services.clients as package
from services.clients.adapters.identity_http import IdentityHttp
from services.clients.api import router
from services.clients.api.internal import router as internal_router
from services.clients.app.application import ClientsApplication, assemble
from services.clients.app.attachments import AttachmentStore
from services.clients.copies import record_staff_name, staff_metadata, staff_names
from services.clients.domain import events
from services.clients.projections import ClientDirectory
from services.clients.projections.companies import company_projections
from services.clients.settings import ClientsSettings
from shared.messaging.copies import TopicCopy
from shared.projections.runner import Projection
from shared.runtime.service import ConsumerSpec, ServiceRuntime, ServiceSpec


async def compose(runtime: ServiceRuntime) -> ClientsApplication:
    """Build the application service; follow identity (staff names) and the notifier."""
    assert runtime.store is not None and runtime.db is not None
    assert runtime.service_key is not None
    await runtime.db.create_tables(staff_metadata)
    identity = IdentityHttp(ClientsSettings().identity_url, runtime.service_key)
    application = await assemble(runtime.store, runtime.db, identity, AttachmentStore(runtime.db))
    runtime.add_consumer(ConsumerSpec("staff-names", ["identity"], record_staff_name))
    deadlines = application.clients.on_notifier_event
    runtime.add_consumer(ConsumerSpec("deadlines", ["notifier"], deadlines))
    return application


def projections() -> list[Projection]:
    """The read models this service keeps (besides the kernel's event counts)."""
    return [ClientDirectory(), *company_projections()]


SPEC = ServiceSpec(
    name="clients",
    port=8004,
    events=events.registry,
    title="Clients service",
    description=package.__doc__ or "",
    routers=[router, internal_router],
    projections=projections,
    compose=compose,
    copies=(TopicCopy("staff_names", ("identity",), (staff_names,), record_staff_name),),
)
