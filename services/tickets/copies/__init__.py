"""The tickets service's copies of other contexts' facts (``shared.messaging.copies``).

* ``support`` – departments and schedules (``departments.events``), staff names
  (``identity.events``), clients' projects and companies (``clients.events``):
  what routing, visibility and expected response times need, kept by consumers and
  filled again by ``python -m shared.cli refill-copies tickets``.
"""
