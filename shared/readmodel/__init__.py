"""The read-model database (SQLAlchemy Core on aiosqlite or asyncpg) and what commits with it.

* ``database`` – ``ReadModelDB``, checkpoints, inbox and offsets tables, bulk writes;
* ``leases`` – one replica at a time for each background job that must not run twice;
* ``attachments`` – uploaded files kept beside the read models, checked and scanned.
"""

from shared.readmodel.attachments import (
    AttachmentPolicy,
    AttachmentStore,
    CommandScanner,
    Scanner,
    StoredAttachment,
    check,
)
from shared.readmodel.database import (
    Checkpoint,
    ReadModelDB,
    RowFold,
    UtcDateTime,
    add_primary_key,
    add_to_rows,
    among,
    async_url,
    checkpoints,
    consumer_offsets,
    dialect_insert,
    drop_primary_key,
    inbox,
    insert_rows,
    kernel_metadata,
    primary_key_of,
    read_checkpoint,
    save_checkpoint,
    save_checkpoints,
    update_rows,
    upsert,
)
from shared.readmodel.leases import (
    PING_SECONDS,
    RETRY_SECONDS,
    Job,
    LeaseBusy,
    LeaseLost,
    Leases,
    lock_key,
)

__all__ = [
    "PING_SECONDS",
    "RETRY_SECONDS",
    "AttachmentPolicy",
    "AttachmentStore",
    "Checkpoint",
    "CommandScanner",
    "Job",
    "LeaseBusy",
    "LeaseLost",
    "Leases",
    "ReadModelDB",
    "RowFold",
    "Scanner",
    "StoredAttachment",
    "UtcDateTime",
    "add_primary_key",
    "add_to_rows",
    "among",
    "async_url",
    "check",
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
    "save_checkpoints",
    "update_rows",
    "upsert",
]
