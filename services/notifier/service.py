"""How the notifier service plugs into the kernel: routers, projections, consumers."""

import services.notifier as package
from services.notifier.api import router
from services.notifier.projections import projections
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="notifier",
    title="Notifier service",
    description=package.__doc__ or "",
    routers=[router],
    projections=projections,
)
