"""The read-model database: SQLAlchemy Core on aiosqlite or asyncpg, chosen by URL.

It holds every read model's rows together with the bookkeeping that must commit
in the same transaction as those rows:

* ``checkpoints`` – how far a projection (or a relay) has got in a global order;
* ``inbox`` – event ids a Kafka consumer has already handled, so a redelivery
  is recognised and skipped; kept for a retention (``shared.messaging.consumer.prune_inbox``);
* ``consumer_offsets`` – the next offset of each partition a consumer group has
  handled, committed with what it handled (``shared.messaging.consumer``);
* ``dead_letters`` – facts a consumer gave up on after repeated failures, by
  where they are on the broker (never their content: the topic keeps that, and
  it may hold personal data), committed with the offset that moves past them.

A kernel table made by an older version gets the nullable columns declared
since then when a service starts (``ReadModelDB.open``). A read model's table
does not: a new column needs its values from the events, so a rebuild.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Dialect,
    Executable,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    TypeDecorator,
    any_,
    bindparam,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that comes back aware, in UTC, on PostgreSQL and SQLite alike.

    SQLite keeps no time zone, so a plain ``DateTime(timezone=True)`` would
    answer naive times there; every instant the services store is UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:
            return value
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


kernel_metadata = MetaData()

checkpoints = Table(
    "checkpoints",
    kernel_metadata,
    Column("name", String(200), primary_key=True),
    Column("position", BigInteger, nullable=False),
    # A relay's count of acknowledged messages and where the last one landed
    # ("partition:offset:event_id"): lets it notice a broker that lost them.
    Column("published", BigInteger, nullable=False, default=0),
    Column("marker", String(200), nullable=True),
)

inbox = Table(
    "inbox",
    kernel_metadata,
    Column("consumer", String(200), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    # None: recorded by a version before this column (or by one still running
    # during an upgrade); pruning stamps such rows, so they age from then on.
    Column("handled_at", UtcDateTime(), nullable=True, default=lambda: datetime.now(UTC)),
    Index("ix_inbox_handled_at", "handled_at"),
)

consumer_offsets = Table(
    "consumer_offsets",
    kernel_metadata,
    Column("group_id", String(255), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    # The event of the message before ``next_offset``: a broker that no longer has
    # it there (one that lost its topics) makes the offset meaningless.
    Column("last_event_id", String(36), nullable=True),
)


dead_letters = Table(
    "dead_letters",
    kernel_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("group_id", String(255), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    # The message's key (a stream id) and the envelope's id and type: enough to find
    # and judge the fact; None for a message that could not even be read.
    Column("key", String(200), nullable=True),
    Column("event_id", String(36), nullable=True),
    Column("event_type", String(200), nullable=True),
    # The failure's type and message with quoted values and SQL parameters taken out
    # (``shared.messaging.consumer.failure_reason``): no personal data, no secrets.
    Column("reason", String(500), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("parked_at", UtcDateTime(), nullable=False),
    # Set by ``shared.cli dead-letters retry``: the running consumer applies it again.
    Column("retry_requested_at", UtcDateTime(), nullable=True),
    # Set by ``dead-letters drop``: given up on, kept so a refill of copies leaves it
    # out as the consumer did, and as a record of what was never applied.
    Column("dropped_at", UtcDateTime(), nullable=True),
    Index("ix_dead_letters_group", "group_id", "topic", "partition", "offset", unique=True),
)


@dataclass(frozen=True)
class Checkpoint:
    position: int = 0
    published: int = 0
    marker: str | None = None


def async_url(url: str) -> str:
    """Map the plain URLs of the settings onto SQLAlchemy's async drivers."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    return url


class ReadModelDB:
    """An async engine plus the kernel's checkpoint and inbox tables."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, url: str, pool_size: int = 5) -> ReadModelDB:
        url = async_url(url)
        if url.startswith("sqlite+aiosqlite:///"):
            path = url.removeprefix("sqlite+aiosqlite:///")
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(url, connect_args={"timeout": 30})
        else:
            # No overflow: a connection opened for a peak and closed after it costs a
            # PostgreSQL backend start each time (seen under load); waiting is cheaper.
            engine = create_async_engine(url, pool_size=pool_size, max_overflow=0)
        db = cls(engine)
        await db.create_tables(kernel_metadata, add_new_columns=True)
        return db

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def create_tables(self, metadata: MetaData, *, add_new_columns: bool = False) -> None:
        """Create what is missing of ``metadata``'s tables, indexes and keys; with
        ``add_new_columns``, also nullable columns declared after a table was made."""
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Replicas starting together would race on CREATE TABLE (and its row
                # type); one at a time, the later ones find the tables there.
                await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('create_tables'))"))
            await conn.run_sync(metadata.create_all)
            if add_new_columns:
                await conn.run_sync(_add_missing_columns, metadata)
            # And any index or primary key missing from a table that exists (a rebuild
            # stopped before it built them, see shared.projections.replay): create_all looks at
            # tables only.
            await conn.run_sync(_create_missing_indexes, metadata)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: everything in the block commits together or not at all."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads only, outside any transaction (autocommit).

        Each statement sees what was committed before it began, and no BEGIN
        and ROLLBACK round trips surround the block: for the hot read paths.
        Never write through it: statements would commit one by one.
        """
        async with self.alone() as conn:  # the same autocommit connection, read from
            yield conn

    @asynccontextmanager
    async def alone(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose statements each commit on their own (autocommit): for a
        write that is whole in one statement, one round trip without BEGIN and COMMIT."""
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    async def execute_alone(
        self, statement: Executable, rows: list[dict[str, Any]] | None = None
    ) -> int:
        """One write that is whole in one statement, committed on its own (autocommit);
        the rows it changed. One round trip where ``transaction()`` adds a BEGIN and a
        COMMIT: for a hot single-statement write (a statement is atomic by itself).
        With ``rows``, the statement once per row of parameters (the driver's
        executemany: one call for a group's writes); what each changed is not counted."""
        async with self.alone() as conn:
            result = await conn.execute(statement, rows)
            return int(result.rowcount or 0) if rows is None else 0

    async def fetch_alone(
        self, statement: Executable, rows: list[dict[str, Any]] | None = None
    ) -> list[Row[Any]]:
        """``execute_alone`` for a write that returns rows (``RETURNING``): its rows. With
        ``rows``, an INSERT's rows as parameters: one statement all the same (the
        dialect's "insertmanyvalues"), compiled once for the process (see ``ROWS``)."""
        async with self.alone() as conn:
            return list((await conn.execute(statement, rows)).all())

    async def checkpoint(self, name: str) -> Checkpoint:
        """The checkpoint stored under ``name``; position 0 when none."""
        async with self.engine.connect() as conn:
            return await read_checkpoint(conn, name)

    def insert_ignoring_duplicates(self, table: Table, **values: object) -> Executable:
        """An INSERT that does nothing when the primary key exists (both dialects)."""
        return dialect_insert(self.dialect, table).values(**values).on_conflict_do_nothing()


# ROWS: an INSERT of several rows takes them as the execution's parameters, never as
# ``.values([...])``: a statement with a list of VALUES has no cache key in SQLAlchemy,
# so it was compiled anew at every execution (a third of the tickets process's
# SQLAlchemy time in the mail bench); with parameters it is compiled once, and run as
# one statement when it returns rows ("insertmanyvalues"), else by the driver's
# executemany (one round trip).


def dialect_insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with the dialect's ``ON CONFLICT`` clauses."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _add_missing_columns(connection: Connection, metadata: MetaData) -> None:
    """Nullable columns declared after a table was made (an upgrade), added empty."""
    inspector = inspect(connection)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
        for column in table.columns:
            if column.name in present or not column.nullable:
                continue
            kind = column.type.compile(dialect=connection.dialect)
            quote = connection.dialect.identifier_preparer.quote
            target = connection.dialect.identifier_preparer.format_table(table)
            connection.execute(text(f"ALTER TABLE {target} ADD COLUMN {quote(column.name)} {kind}"))


def _create_missing_indexes(connection: Connection, metadata: MetaData) -> None:
    for table in metadata.sorted_tables:
        for index in table.indexes:
            index.create(connection, checkfirst=True)
        if (
            connection.dialect.name == "postgresql"
            and len(table.primary_key.columns) > 0
            and primary_key_of(connection, table) is None
        ):
            add_primary_key(connection, table)


def primary_key_of(connection: Connection, table: Table) -> str | None:
    """The name of ``table``'s primary key constraint in PostgreSQL, None when it has none."""
    name: str | None = connection.execute(
        text(
            "SELECT conname FROM pg_catalog.pg_constraint "
            "WHERE conrelid = to_regclass(:table) AND contype = 'p'"
        ),
        {"table": connection.dialect.identifier_preparer.format_table(table)},
    ).scalar()
    return name


def drop_primary_key(connection: Connection, table: Table) -> None:
    """Remove ``table``'s primary key (PostgreSQL): a rebuild fills it faster without."""
    name = primary_key_of(connection, table)
    if name is not None:
        quote = connection.dialect.identifier_preparer.quote
        target = connection.dialect.identifier_preparer.format_table(table)
        connection.execute(text(f"ALTER TABLE {target} DROP CONSTRAINT {quote(name)}"))


def add_primary_key(connection: Connection, table: Table) -> None:
    """Give ``table`` back its declared primary key (PostgreSQL), built in one pass."""
    quote = connection.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c.name) for c in table.primary_key.columns)
    target = connection.dialect.identifier_preparer.format_table(table)
    connection.execute(text(f"ALTER TABLE {target} ADD PRIMARY KEY ({columns})"))


async def read_checkpoint(conn: AsyncConnection, name: str) -> Checkpoint:
    row = (
        await conn.execute(
            select(checkpoints.c.position, checkpoints.c.published, checkpoints.c.marker).where(
                checkpoints.c.name == name
            )
        )
    ).first()
    return Checkpoint(int(row[0]), int(row[1]), row[2]) if row else Checkpoint()


async def save_checkpoint(
    conn: AsyncConnection,
    name: str,
    position: int,
    published: int | None = None,
    marker: str | None = None,
) -> None:
    """Upsert a checkpoint inside the caller's transaction."""
    values: dict[str, object] = {"name": name, "position": position, "marker": marker}
    if published is not None:
        values["published"] = published
    await upsert(conn, checkpoints, values, insert_only={"published": 0})


async def save_checkpoints(conn: AsyncConnection, names: list[str], position: int) -> None:
    """``save_checkpoint`` of several names at one position, in one statement (a page
    applied to a group of read models moves all their checkpoints at once)."""
    if not names:
        return
    statement = dialect_insert(conn.dialect.name, checkpoints)
    await conn.execute(  # the rows as parameters (``ROWS``)
        statement.on_conflict_do_update(
            index_elements=["name"],
            set_={"position": statement.excluded.position, "marker": statement.excluded.marker},
        ),
        [{"name": name, "position": position, "published": 0, "marker": None} for name in names],
    )


async def upsert(
    conn: AsyncConnection,
    table: Table,
    row: Mapping[str, Any],
    *,
    insert_only: Mapping[str, Any] | None = None,
    when: Callable[[Any], ColumnElement[bool]] | None = None,
) -> None:
    """Make the row with ``row``'s primary key hold ``row``'s values: one statement.

    ``INSERT … ON CONFLICT (primary key) DO UPDATE`` on both dialects, so two
    writers never both insert (an update-then-insert can). Columns not in ``row``
    keep their values on an update; ``insert_only`` gives them a value when the
    row is new. ``when``, given the proposed row (``excluded``), limits the update
    to a stored row it holds for (``DO UPDATE … WHERE``): a mark that only moves
    forward is ``when=lambda new: table.c.position < new.position``.
    """
    key = [column.name for column in table.primary_key.columns]
    statement = dialect_insert(conn.dialect.name, table).values({**(insert_only or {}), **row})
    changes = {name: statement.excluded[name] for name in row if name not in key}
    if changes:
        condition = when(statement.excluded) if when is not None else None
        await conn.execute(
            statement.on_conflict_do_update(index_elements=key, set_=changes, where=condition)
        )
    else:
        await conn.execute(statement.on_conflict_do_nothing(index_elements=key))


def among(conn: AsyncConnection, column: Column[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN values``. On PostgreSQL one array parameter (``= ANY``): SQLAlchemy
    binds it in one piece, not one parameter per value (thousands in a rebuild's page)."""
    if conn.dialect.name == "postgresql":
        array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return column == any_(array)
    return column.in_(list(values))


async def add_to_rows(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Add each row's amounts (every column outside the primary key) to the stored row
    of its key, creating it when missing: one ``INSERT ... ON CONFLICT DO UPDATE`` for
    all (PostgreSQL and SQLite). Keys must not repeat within ``rows``."""
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    amounts = [name for name in rows[0] if name not in keys]
    if conn.dialect.name == "postgresql":
        # The rows as one array per column: one statement executed once, where an
        # executemany runs it once per row (the reports add thousands per page).
        names = keys + amounts
        quote = conn.dialect.identifier_preparer.quote
        added = ", ".join(
            f"{quote(a)} = {quote(table.name)}.{quote(a)} + excluded.{quote(a)}" for a in amounts
        )
        target = conn.dialect.identifier_preparer.format_table(table)
        await _run_with_arrays(
            conn,
            table,
            names,
            rows,
            f"INSERT INTO {target} ({_listed(conn, names)}) SELECT * FROM {{arrays}} "
            f"ON CONFLICT ({_listed(conn, keys)}) DO UPDATE SET {added}",
        )
        return
    statement = sqlite.insert(table)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=keys,
            set_={name: table.c[name] + statement.excluded[name] for name in amounts},
        ),
        rows,
    )


async def update_rows(
    conn: AsyncConnection, table: Table, key: str, rows: list[dict[str, Any]]
) -> None:
    """Set each row's other columns on the stored row whose ``key`` column matches (each
    row naming the same columns; an unknown key changes nothing). On PostgreSQL one
    ``UPDATE ... FROM unnest(...)`` for all, elsewhere an ``executemany``."""
    if not rows:
        return
    names = list(rows[0])
    others = [n for n in names if n != key]
    if conn.dialect.name == "postgresql":
        quote = conn.dialect.identifier_preparer.quote
        assigned = ", ".join(f"{quote(n)} = given.{quote(n)}" for n in others)
        target = conn.dialect.identifier_preparer.format_table(table)
        await _run_with_arrays(
            conn,
            table,
            names,
            rows,
            f"UPDATE {target} SET {assigned} FROM {{arrays}} AS given({_listed(conn, names)}) "
            f"WHERE {target}.{quote(key)} = given.{quote(key)}",
        )
        return
    statement = (
        update(table)
        .where(table.c[key] == bindparam("row_key"))
        .values({n: bindparam(f"row_{n}") for n in others})
    )
    await conn.execute(
        statement, [{"row_key": r[key], **{f"row_{n}": r[n] for n in others}} for r in rows]
    )


def _listed(conn: AsyncConnection, names: Iterable[str]) -> str:
    return ", ".join(conn.dialect.identifier_preparer.quote(n) for n in names)


async def _run_with_arrays(
    conn: AsyncConnection, table: Table, names: list[str], rows: list[dict[str, Any]], sql: str
) -> None:
    """Run ``sql`` (PostgreSQL) with ``{arrays}`` replaced by ``unnest`` of one typed
    array parameter per column of ``names``, holding the rows' values in order."""
    dialect = conn.dialect
    columns = [table.c[name] for name in names]
    arrays = []
    for column in columns:
        values = [row[column.name] for row in rows]
        process = _bind_processor(column)
        arrays.append(values if process is None else [process(v, dialect) for v in values])
    typed = ", ".join(
        f"${n}::{column.type.compile(dialect=dialect)}[]" for n, column in enumerate(columns, 1)
    )
    driver = await _driver_in_transaction(conn)
    await driver.execute(sql.replace("{arrays}", f"unnest({typed})"), *arrays)


def _bind_processor(column: Column[Any]) -> Callable[[Any, Dialect], Any] | None:
    """What a ``TypeDecorator`` column does to a value before it is sent (the driver
    is given values directly here, past SQLAlchemy's own processing)."""
    if isinstance(column.type, TypeDecorator):
        return column.type.process_bind_param
    return None


async def _driver_in_transaction(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, inside the caller's transaction.

    SQLAlchemy's driver adapter sends BEGIN with the first statement; a statement
    sent to the driver directly before that would commit on its own."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    if not driver.is_in_transaction():
        await conn.execute(text("SELECT 1"))
    return driver


async def insert_rows(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (each naming the same columns) inside the caller's transaction.

    On PostgreSQL a binary ``COPY`` (the driver encodes the rows in C, the server
    skips planning each one): what rebuilding a read model spends least on. On
    SQLite an ``executemany`` INSERT. Python-side column defaults are not applied.
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        await conn.execute(insert(table), rows)
        return
    driver = await _driver_in_transaction(conn)
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    processors = [
        (i, process, isinstance(column.type, UtcDateTime))
        for i, column in enumerate(columns)
        if (process := _bind_processor(column))
    ]
    dialect = conn.dialect
    # A rebuild sends a million rows through here: each row's values taken in one C
    # call, and a time already in UTC (every one a projection makes) passed as is,
    # as ``UtcDateTime`` would.
    pick = itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
    records: list[Any]
    if not processors:
        records = [pick(row) for row in rows]
    else:
        records = []
        for row in rows:
            record = list(pick(row))
            for i, process, utc in processors:
                value = record[i]
                if not (
                    utc and (value is None or (value.__class__ is datetime and value.tzinfo is UTC))
                ):
                    record[i] = process(value, dialect)
            records.append(record)
    await driver.copy_records_to_table(
        table.name, records=records, columns=names, schema_name=table.schema
    )


class RowFold:
    """The rows of ``table`` a projection's batch touches, changed in memory and
    written once at the end: new rows in one INSERT, changed ones in one UPDATE
    (``update_rows``), instead of a statement or two per event."""

    def __init__(self, table: Table) -> None:
        [key] = table.primary_key.columns  # one-column keys only
        self.table = table
        self.key = key
        self.rows: dict[Any, dict[str, Any]] = {}
        self.new: list[Any] = []  # added in this batch: inserted
        self.changed: set[Any] = set()  # stored before: updated

    async def load(self, conn: AsyncConnection, keys: Iterable[Any]) -> None:
        """Read the stored rows of ``keys`` (those not already held) in one statement."""
        wanted = set(keys).difference(self.rows)
        if wanted:
            for row in await conn.execute(select(self.table).where(among(conn, self.key, wanted))):
                self.rows[row._mapping[self.key.name]] = dict(row._mapping)

    def get(self, key: Any) -> dict[str, Any] | None:
        return self.rows.get(key)

    def add(self, row: dict[str, Any]) -> None:
        """A new row (every column given)."""
        key = row[self.key.name]
        self.rows[key] = row
        self.new.append(key)

    def change(self, key: Any, values: dict[str, Any]) -> None:
        """Set ``values`` on a held row; an unknown key changes nothing (as an UPDATE)."""
        row = self.rows.get(key)
        if row is not None:
            row.update(values)
            self.changed.add(key)

    async def write(self, conn: AsyncConnection) -> None:
        await insert_rows(conn, self.table, [self.rows[k] for k in self.new])
        updated = self.changed.difference(self.new)
        await update_rows(conn, self.table, self.key.name, [self.rows[k] for k in sorted(updated)])
        self.new, self.changed = [], set()
