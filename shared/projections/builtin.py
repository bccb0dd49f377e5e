"""A read model every service runs: how many events of each type its store holds.

Cheap, useful to operators (``/ready`` shows it), and a live check that the
projection machinery of the kernel works in every service.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table, case, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import RecordedEvent
from shared.projections.runner import Projection
from shared.readmodel.database import UtcDateTime, dialect_insert


class EventTypeCounts(Projection):
    name = "event_type_counts"
    partitionable = True

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
        """One upsert for the batch: a count per event type, and its latest event.

        An upsert, in key order, so that processes rebuilding parts of the log side
        by side (``shared.projections.replay``) add to the same rows without losing a count."""
        latest: dict[str, tuple[int, RecordedEvent]] = {}
        for event in events:
            seen, _ = latest.get(event.type, (0, event))
            latest[event.type] = (seen + 1, event)  # events come in order: the last wins
        if not latest:
            return
        t = self.table
        rows = [
            {
                "type": type_,
                "count": count,
                "last_position": last.position,
                "last_occurred_at": last.occurred_at,
            }
            for type_, (count, last) in sorted(latest.items())
        ]
        # The rows as parameters, not ``.values(rows)``: compiled once
        # (ROWS in shared.readmodel.database).
        statement = dialect_insert(conn.dialect.name, t)
        later = statement.excluded.last_position > t.c.last_position
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[t.c.type],
                set_={
                    "count": t.c.count + statement.excluded.count,
                    "last_position": case(
                        (later, statement.excluded.last_position), else_=t.c.last_position
                    ),
                    "last_occurred_at": case(
                        (later, statement.excluded.last_occurred_at), else_=t.c.last_occurred_at
                    ),
                },
            ),
            rows,
        )

    async def counts(self, conn: AsyncConnection) -> dict[str, int]:
        rows = await conn.execute(select(self.table.c.type, self.table.c.count))
        return {str(row[0]): int(row[1]) for row in rows}
