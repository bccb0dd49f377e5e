"""``ReadModelDB.reading()``: reads outside a transaction, on PostgreSQL and SQLite.

The support center's announcement check relies on it: a statement in the
block sees what another connection committed after an earlier statement of
the same block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, func, select

from shared.readmodel import ReadModelDB

metadata = MetaData()
numbers = Table("numbers", metadata, Column("n", Integer, primary_key=True))


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
