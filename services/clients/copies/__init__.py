"""The clients service's copies of other contexts' facts (``shared.messaging.copies``).

* ``staff_names`` – staff names from ``identity.events``, for ``%admin_name%`` in
  messages to clients; filled again by ``python -m shared.cli refill-copies clients``.
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import RecordedEvent
from shared.messaging import staff_facts

staff_metadata = MetaData()

staff_names = staff_facts.staff_names_table(staff_metadata)


async def record_staff_name(conn: AsyncConnection, event: RecordedEvent) -> None:
    """``staff_names`` from ``identity.events`` (one fact), in the consumer's transaction."""
    await staff_facts.record_staff_name(conn, staff_names, event)
