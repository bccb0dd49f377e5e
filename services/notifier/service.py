"""How the notifier service plugs into the kernel: routers, projections, consumers."""

from services.notifier.api import router
from services.notifier.projections import projections
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="notifier",
    title="Notifier service",
    description="Subscriptions, delivery log, timers (deadlines); e-mail and SMS from every context's events.",
    routers=[router],
    projections=projections,
)
