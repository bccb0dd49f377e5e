"""Domain model of the tickets context.

Aggregates that take commands and return events; no I/O.

* ``ticket`` – the ``Ticket`` aggregate: conversation, transfers, closing, ratings,
  collision safety (``TicketChanged``);
* ``events`` – the payload models and the context's ``registry`` (the catalogue's
  events register into it from ``catalog_events``);
* ``catalog`` – categories, paid requests, templates, announcements, settings.
"""
