"""How the tickets service plugs into the kernel: routers, projections, consumers."""

from services.tickets.api import router
from services.tickets.projections import projections
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="tickets",
    title="Tickets service",
    description="Tickets, categories, response templates, announcements, support settings, paid-request balance; queues and reports.",
    routers=[router],
    projections=projections,
)
