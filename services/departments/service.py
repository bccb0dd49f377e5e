"""How the departments service plugs into the kernel: routers, projections, consumers."""

from services.departments.api import router
from services.departments.projections import projections
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="departments",
    title="Departments service",
    description="Departments, department rights, work schedules (business hours, time zone, holidays).",
    routers=[router],
    projections=projections,
)
