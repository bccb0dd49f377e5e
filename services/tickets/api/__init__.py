"""HTTP adapter of the tickets context (paths of API.md).

* ``tickets`` – the ticket core: ``/support/departments``, ``/tickets`` and its commands;
* ``catalog`` – categories, paid requests, templates, announcements, settings.
"""

from services.tickets.api.tickets import router

__all__ = ["router"]
