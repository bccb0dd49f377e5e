"""``ReadModelDB.reading()`` (reads outside a transaction), ``RowFold`` and
``insert_rows``, on both dialects.

The support center's announcement check relies on it: a statement in the
block sees what another connection committed after an earlier statement of
the same block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from shared.readmodel.database import ReadModelDB, RowFold, UtcDateTime, insert_rows

metadata = MetaData()
numbers = Table("numbers", metadata, Column("n", Integer, primary_key=True))
named = Table("named", metadata, Column("n", Integer, primary_key=True), Column("name", String(20)))
stamped = Table(
    "stamped", metadata, Column("n", Integer, primary_key=True), Column("at", UtcDateTime())
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/read.db"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


@pytest.fixture
async def db(url: str) -> AsyncIterator[ReadModelDB]:
    opened = await ReadModelDB.open(url)
    await opened.create_tables(metadata)
    yield opened
    await opened.close()


async def test_each_read_sees_what_was_committed_before_it(db: ReadModelDB) -> None:
    count = select(func.count()).select_from(numbers)
    async with db.reading() as reader:
        assert (await reader.execute(count)).scalar() == 0
        async with db.transaction() as writer:
            await writer.execute(numbers.insert().values(n=1))
        assert (await reader.execute(count)).scalar() == 1
    async with db.transaction() as writer:  # the reader left nothing open or locked
        await writer.execute(numbers.insert().values(n=2))


async def test_a_row_fold_writes_each_row_once_with_its_last_values(db: ReadModelDB) -> None:
    """``RowFold``: rows read at once, changed in memory, new ones inserted and stored
    ones updated at the end; an unknown key changes nothing."""
    async with db.transaction() as conn:
        await conn.execute(named.insert(), [{"n": 1, "name": "one"}, {"n": 2, "name": "two"}])
    async with db.transaction() as conn:
        fold = RowFold(named)
        await fold.load(conn, [1, 2, 99])
        assert sorted(fold.rows) == [1, 2]
        fold.change(1, {"name": "uno"})
        fold.change(1, {"name": "eins"})
        fold.add({"n": 3, "name": "three"})
        fold.change(3, {"name": "drei"})
        fold.change(99, {"name": "nobody"})
        await fold.write(conn)
    async with db.reading() as conn:
        rows = dict((await conn.execute(select(named.c.n, named.c.name))).all())
    assert rows == {1: "eins", 2: "two", 3: "drei"}


async def test_inserted_rows_commit_or_roll_back_with_the_transaction(db: ReadModelDB) -> None:
    """``insert_rows`` (a COPY on PostgreSQL) as the first statement of a transaction
    still belongs to it; times are stored as the same instants, in UTC."""
    noon = datetime(2026, 12, 1, 12, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {"n": 1, "at": noon},
        {"n": 2, "at": noon.astimezone(timezone(timedelta(hours=3)))},
        {"n": 3, "at": noon.replace(tzinfo=None)},  # naive: taken as UTC
        {"n": 4, "at": None},
    ]
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await insert_rows(conn, stamped, rows)
            raise RuntimeError("the batch fails after the rows")
    async with db.transaction() as conn:
        await insert_rows(conn, stamped, [])
        await insert_rows(conn, stamped, rows)
    async with db.reading() as conn:
        stored = dict((await conn.execute(select(stamped.c.n, stamped.c.at))).all())
    assert stored == {1: noon, 2: noon, 3: noon, 4: None}
    assert all(at is None or at.tzinfo == UTC for at in stored.values())
