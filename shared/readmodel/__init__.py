"""The read-model database (SQLAlchemy Core on aiosqlite or asyncpg) and what commits with it.

* ``database`` – ``ReadModelDB``, checkpoints, inbox and offsets tables, bulk writes;
* ``leases`` – one replica at a time for each background job that must not run twice.
"""

from shared.readmodel.database import (
    UtcDateTime,
    kernel_metadata,
    checkpoints,
    inbox,
    consumer_offsets,
    Checkpoint,
    async_url,
    ReadModelDB,
    dialect_insert,
    primary_key_of,
    drop_primary_key,
    add_primary_key,
    read_checkpoint,
    save_checkpoint,
    among,
    add_to_rows,
    update_rows,
    insert_rows,
    RowFold,
)
from shared.readmodel.leases import (
    PING_SECONDS,
    RETRY_SECONDS,
    lock_key,
    LeaseLost,
    LeaseBusy,
    Job,
    Leases,
)

__all__ = [
    "Checkpoint",
    "Job",
    "LeaseBusy",
    "LeaseLost",
    "Leases",
    "PING_SECONDS",
    "RETRY_SECONDS",
    "ReadModelDB",
    "RowFold",
    "UtcDateTime",
    "add_primary_key",
    "add_to_rows",
    "among",
    "async_url",
    "checkpoints",
    "consumer_offsets",
    "dialect_insert",
    "drop_primary_key",
    "inbox",
    "insert_rows",
    "kernel_metadata",
    "lock_key",
    "primary_key_of",
    "read_checkpoint",
    "save_checkpoint",
    "update_rows",
]
