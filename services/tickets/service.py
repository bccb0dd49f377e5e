"""How the tickets service plugs into the kernel: routers, projections, consumers."""

import services.tickets as package
from services.tickets.api import router
from services.tickets.projections import projections
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="tickets",
    title="Tickets service",
    description=package.__doc__ or "",
    routers=[router],
    projections=projections,
)
