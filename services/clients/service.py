"""How the clients service plugs into the kernel: routers, projections, consumers."""

import services.clients as package
from services.clients.api import router
from services.clients.projections import projections
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="clients",
    title="Clients service",
    description=package.__doc__ or "",
    routers=[router],
    projections=projections,
)
