"""The support center's one-statement look-ups and writes agree with the plain ones.

Opening a ticket reads the client, the department and its business hours in
one round trip (``support.opening``), and the blocking-announcement check
reads the rows and the answered-beyond-the-read-model marks in one statement
(``catalog.blocking_now``). Both are checked here on PostgreSQL and SQLite
against what the separate queries answer, for every combination of present
and missing rows.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from services.tickets.copies import support
from services.tickets.projections import catalog, reports
from shared.domain.business_hours import ROUND_THE_CLOCK
from shared.names import checkpoint_name
from shared.readmodel.database import ReadModelDB, add_to_rows, save_checkpoint, upsert

WEEKLY = orjson.dumps({"mon": [["09:00", "18:00"]], "tue": [["09:00", "18:00"]]}).decode()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/read.db"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


@pytest.fixture
async def db(url: str) -> AsyncIterator[ReadModelDB]:
    opened = await ReadModelDB.open(url)
    for metadata in (support.metadata, catalog.metadata, catalog.marks_metadata):
        await opened.create_tables(metadata)
    yield opened
    await opened.close()


def _department(department_id: str, schedule_id: str | None) -> dict[str, object]:
    return {
        "department_id": department_id,
        "name_en": "Support",
        "name_ru": "Поддержка",
        "schedule_id": schedule_id,
        "support_enabled": True,
        "providers": '["p1"]',
        "description": "help",
        "sort": 3,
        "charge_requests": True,
        "deleted": False,
    }


async def test_opening_answers_as_the_three_lookups(db: ReadModelDB) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            support.known_clients.insert().values(
                client_id="c1", project_id="p1", company_id="co", company_manager=True, erased=False
            )
        )
        await conn.execute(
            support.known_schedules.insert().values(
                schedule_id="s1", timezone="Europe/Moscow", weekly=WEEKLY, holidays='["2026-12-31"]'
            )
        )
        await conn.execute(support.known_departments.insert().values(**_department("d1", "s1")))
        await conn.execute(support.known_departments.insert().values(**_department("d2", None)))
        await conn.execute(support.known_departments.insert().values(**_department("d3", "gone")))
    async with db.reading() as conn:
        for client_id, department_id in itertools.product(
            ("c1", "nobody"), ("d1", "d2", "d3", "x")
        ):
            found = await support.opening(conn, client_id, department_id)
            assert found.client == await support.client(conn, client_id)
            assert found.department == await support.department(conn, department_id)
            assert found.hours == await support.hours_of(conn, department_id)
        scheduled = await support.opening(conn, "c1", "d1")
        assert scheduled.client is not None and scheduled.client.company_manager is True
        assert scheduled.department is not None and scheduled.department.providers == ("p1",)
        assert scheduled.hours != ROUND_THE_CLOCK
        assert scheduled.hours.timezone == "Europe/Moscow"
        assert (await support.opening(conn, "c1", "d2")).hours == ROUND_THE_CLOCK


async def test_blocking_now_reads_rows_and_marks_beyond_the_checkpoint(db: ReadModelDB) -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    hour = timedelta(hours=1)

    def announcement(
        announcement_id: str, starts: datetime, until: datetime, blocking: bool
    ) -> dict[str, object]:
        return {
            "announcement_id": announcement_id,
            "text": '"maintenance"',
            "starts_at": starts,
            "ends_at": until,
            "ended_at": None,
            "active_until": until,
            "blocking": blocking,
            "published_by": "admin",
            "version": 1,
        }

    async with db.transaction() as conn:
        a = catalog.announcements
        await conn.execute(
            a.insert().values(**announcement("active", now - hour, now + hour, True))
        )
        await conn.execute(
            a.insert().values(**announcement("later", now + hour, now + 2 * hour, True))
        )
        await conn.execute(a.insert().values(**announcement("over", now - 2 * hour, now, True)))
        await conn.execute(a.insert().values(**announcement("info", now - hour, now + hour, False)))
        await save_checkpoint(conn, checkpoint_name(catalog.CatalogDirectory.name), 10)
        marks = catalog.announcement_marks
        await conn.execute(marks.insert().values(announcement_id="seen", position=10))
        await conn.execute(marks.insert().values(announcement_id="beyond", position=11))
    async with db.reading() as conn:
        rows, marked = await catalog.blocking_now(conn, now)
    assert [row.announcement_id for row in rows] == ["active"]
    assert rows[0].starts_at == now - hour and rows[0].active_until == now + hour
    assert marked == {"beyond"}


async def test_report_rows_add_up_in_one_upsert(db: ReadModelDB) -> None:
    """``add_to_rows`` (ticket reports, the queue's counts) adds a batch's amounts to
    their rows with one statement per table."""
    await db.create_tables(reports.metadata)
    key = {"month": "2026-12", "department_id": "d1", "staff_id": "s1"}
    other = {**key, "staff_id": "s2"}
    amounts = {"first_count": 1, "first_ms": 500, "response_count": 2, "response_ms": 900}
    async with db.transaction() as conn:
        await add_to_rows(conn, reports.response_times, [{**key, **amounts}])
    async with db.transaction() as conn:  # the same key again, and a new one
        await add_to_rows(conn, reports.response_times, [{**key, **amounts}, {**other, **amounts}])
    async with db.reading() as conn:
        rows = {
            row.staff_id: (row.first_count, row.first_ms, row.response_count, row.response_ms)
            for row in await conn.execute(select(reports.response_times))
        }
    assert rows == {"s1": (2, 1000, 4, 1800), "s2": (1, 500, 2, 900)}


async def test_an_upsert_with_a_condition_moves_a_mark_only_forward(db: ReadModelDB) -> None:
    """``upsert(when=…)`` (the support catalogue's announcement marks): a new row is
    inserted, a stored one changes only where the condition holds, in one statement."""
    marks = catalog.announcement_marks
    await db.create_tables(catalog.marks_metadata)

    async def mark(position: int) -> None:
        async with db.transaction() as conn:
            row = {"announcement_id": "a1", "position": position}
            await upsert(conn, marks, row, when=lambda new: marks.c.position < new.position)

    async def stored() -> list[int]:
        async with db.reading() as conn:
            return [r.position for r in await conn.execute(select(marks.c.position))]

    await mark(5)
    assert await stored() == [5]
    await mark(3)  # behind the stored mark: kept as it is
    assert await stored() == [5]
    await mark(8)
    assert await stored() == [8]
