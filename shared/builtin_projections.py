"""A read model every service runs: how many events of each type its store holds.

Cheap, useful to operators (``/ready`` shows it), and a live check that the
projection machinery of the kernel works in every service.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import RecordedEvent
from shared.projections import Projection
from shared.readmodel import UtcDateTime


class EventTypeCounts(Projection):
    name = "event_type_counts"

    def __init__(self) -> None:
        self.metadata = MetaData()
        self.table = Table(
            "event_type_counts",
            self.metadata,
            Column("type", String(200), primary_key=True),
            Column("count", BigInteger, nullable=False),
            Column("last_position", BigInteger, nullable=False),
            Column("last_occurred_at", UtcDateTime(), nullable=False),
        )

    async def apply(self, conn: AsyncConnection, event: RecordedEvent) -> None:
        await self.apply_all(conn, [event])

    async def apply_all(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        """One statement or two per event type in the batch, not per event."""
        latest: dict[str, tuple[int, RecordedEvent]] = {}
        for event in events:
            seen, _ = latest.get(event.type, (0, event))
            latest[event.type] = (seen + 1, event)  # events come in order: the last wins
        t = self.table
        for type_, (count, last) in latest.items():
            updated = await conn.execute(
                t.update()
                .where(t.c.type == type_)
                .values(
                    count=t.c.count + count,
                    last_position=last.position,
                    last_occurred_at=last.occurred_at,
                )
            )
            if updated.rowcount == 0:
                await conn.execute(
                    t.insert().values(
                        type=type_,
                        count=count,
                        last_position=last.position,
                        last_occurred_at=last.occurred_at,
                    )
                )

    async def counts(self, conn: AsyncConnection) -> dict[str, int]:
        rows = await conn.execute(select(self.table.c.type, self.table.c.count))
        return {str(row[0]): int(row[1]) for row in rows}
