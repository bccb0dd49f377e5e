"""How the clients service plugs into the kernel: routers, projections, consumers."""

from services.clients.api import router
from services.clients.projections import projections
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="clients",
    title="Clients service",
    description="Clients, client groups, projects, companies, contacts, equipment, messages to clients, penalty points.",
    routers=[router],
    projections=projections,
)
