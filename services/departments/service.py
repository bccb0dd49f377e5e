"""How the departments service plugs into the kernel: routers, projections, consumers."""

import services.departments as package
from services.departments.api import router
from services.departments.projections import projections
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="departments",
    title="Departments service",
    description=package.__doc__ or "",
    routers=[router],
    projections=projections,
)
