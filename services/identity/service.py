"""How the identity service plugs into the kernel: routers, projections, consumers."""

from services.identity.api import router
from services.identity.projections import projections
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="identity",
    title="Identity service",
    description="Staff accounts, credentials, sessions, individual rights, full access, IP policy; the effective-permissions read model.",
    routers=[router],
    projections=projections,
)
