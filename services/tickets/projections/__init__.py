"""Read models of the tickets context, fed from its own store or other contexts' topics."""

from shared.projections import Projection


def projections() -> list[Projection]:
    """The read models this service keeps (besides the kernel's event counts)."""
    return []
