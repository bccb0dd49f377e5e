"""Read models of the tickets context, fed from its own store or other contexts' topics.

* ``queue`` – ``TicketQueue``: tickets, their timelines and counts (``queries`` reads it);
* ``support`` – departments, schedules and clients as other contexts publish them
  (kept by a consumer, not a projection of this store);
* ``catalog`` – the support catalogue's read models.
"""

from services.tickets.projections.catalog import catalog_projections
from services.tickets.projections.queue import TicketQueue
from shared.projections.runner import Projection


def projections() -> list[Projection]:
    """The read models this service keeps (besides the kernel's event counts)."""
    return [TicketQueue(), *catalog_projections()]
