"""How the notifier service plugs into the kernel: routers, projections, its own workers.

Its workers (the faust stream processor, the timekeeper, the postman) start in
``on_start`` and stop with the service; see ``app/notifier.py``.
"""

import services.notifier as package
from services.notifier.api import router
from services.notifier.app.notifier import start
from services.notifier.projections import projections
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="notifier",
    title="Notifier service",
    description=package.__doc__ or "",
    routers=[router],
    projections=projections,
    on_start=start,
)
