"""How the departments service plugs into the kernel: routers, projections, first start."""

import services.departments as package
from services.departments.api import router
from services.departments.app.application import DepartmentsApplication
from services.departments.app.handlers import Departments
from services.departments.domain import events
from services.departments.projections import projections
from shared.runtime.service import ServiceRuntime, ServiceSpec


async def compose(runtime: ServiceRuntime) -> DepartmentsApplication:
    """Build the application service; create the default departments once."""
    assert runtime.store is not None and runtime.db is not None
    departments = Departments(store=runtime.store, db=runtime.db)
    await departments.create_defaults()
    return DepartmentsApplication(departments=departments)


SPEC = ServiceSpec(
    name="departments",
    port=8002,
    events=events.registry,
    title="Departments service",
    description=package.__doc__ or "",
    routers=[router],
    projections=projections,
    compose=compose,
)
