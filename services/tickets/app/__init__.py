"""Application layer of the tickets context: load an aggregate, decide, append.

* ``handlers`` – ``Tickets``, the ticket core's commands and its consumers;
* ``visibility`` – who sees which ticket;
* ``ports`` – what the core needs of the catalogue (``CatalogPort``),
  implemented by ``catalog.SupportCatalog``.
"""
