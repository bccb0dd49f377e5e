"""Read models of the tickets context, fed from its own store.

* ``queue`` – ``TicketQueue``: tickets, their timelines and counts (``queries`` reads it);
* ``catalog`` – the support catalogue's read models.

Copies of other contexts' facts are in ``services.tickets.copies``.
"""

from services.tickets.projections.catalog import catalog_projections
from services.tickets.projections.queue import TicketQueue
from shared.projections.runner import Projection


def projections() -> list[Projection]:
    """The read models this service keeps (besides the kernel's event counts)."""
    return [TicketQueue(), *catalog_projections()]
