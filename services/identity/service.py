"""How the identity service plugs into the kernel: routers, projections, consumers."""

import services.identity as package
from services.identity.api import router
from services.identity.projections import projections
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="identity",
    title="Identity service",
    description=package.__doc__ or "",
    routers=[router],
    projections=projections,
)
