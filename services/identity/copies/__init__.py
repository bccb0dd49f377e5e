"""The identity service's copies of other contexts' facts (``shared.messaging.copies``).

* ``departments`` – ``departments_seen`` from ``departments.events``: which
  departments exist and the rights each gives (memberships are checked and
  members' access derived from it); filled again by
  ``python -m shared.cli refill-copies identity``.
"""
