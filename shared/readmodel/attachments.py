"""Uploaded files of a service, kept in its database beside the read models.

Rules it keeps (for every service that takes files: tickets' messages, the mail gateway):

* an upload is refused with a 422 naming ``file`` when it is empty, larger than
  the policy's cap, of a type outside the allow-list (``shared.domain.attachments``),
  or rejected by the virus scanner; nothing is stored then;
* the virus scanner is a hook (``Scanner``): ``ATTACHMENT_SCAN_COMMAND`` runs a
  command (``clamdscan --no-summary -``) with the file on its stdin, and a non-zero
  exit refuses the file; a scanner that cannot run refuses too (fail closed);
* a file is stored whole or not at all (one insert); erasure deletes them.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, delete, select

from shared.domain.aggregate import DomainError
from shared.domain.attachments import (
    DEFAULT_TYPES,
    MAX_FILENAME,
    SIGNATURES,
    AttachmentRecord,
    clean_filename,
    content_type_of,
)
from shared.readmodel.database import ReadModelDB, UtcDateTime


@dataclass(frozen=True)
class StoredAttachment:
    record: AttachmentRecord
    filename: str
    uploaded_by: str


class Scanner(Protocol):
    async def scan(self, data: bytes, filename: str) -> str | None:
        """None when the file is clean, else why it is refused."""
        ...


class CommandScanner:
    """Runs a virus scanner's command with the file on stdin (exit 0: clean)."""

    def __init__(self, command: str, timeout: float = 60.0) -> None:
        self.argv = shlex.split(command)
        self.timeout = timeout

    async def scan(self, data: bytes, filename: str) -> str | None:
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError:
            return "the virus scanner could not run"
        try:
            out, _ = await asyncio.wait_for(process.communicate(data), self.timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            return "the virus scanner did not answer in time"
        if process.returncode == 0:
            return None
        found = out.decode(errors="replace").strip().splitlines()
        return "rejected by the virus scanner" + (f": {found[-1][:200]}" if found else "")


@dataclass(frozen=True)
class AttachmentPolicy:
    max_bytes: int = 10 * 1024 * 1024
    types: frozenset[str] = DEFAULT_TYPES
    scanner: Scanner | None = field(default=None, compare=False)


async def check(data: bytes, filename: str, policy: AttachmentPolicy) -> str:
    """The file's content type, or ``DomainError`` on ``file`` saying why it is refused."""
    if not data:
        raise DomainError("file", "the file is empty")
    if len(data) > policy.max_bytes:
        raise DomainError("file", f"larger than {policy.max_bytes} bytes")
    content_type = content_type_of(filename)
    if content_type not in policy.types:
        raise DomainError(
            "file", f"files of type {content_type or 'unknown'!r} ({filename}) are not accepted"
        )
    signatures = SIGNATURES.get(content_type)
    if signatures and not data.startswith(signatures):
        raise DomainError("file", f"the content is not a {content_type} file")
    if policy.scanner is not None:
        refused = await policy.scanner.scan(data, filename)
        if refused:
            raise DomainError("file", refused)
    return content_type


class AttachmentStore:
    """Uploaded files of one service, in a table of its own (``table_name``)."""

    def __init__(self, db: ReadModelDB, table_name: str, policy: AttachmentPolicy) -> None:
        self.db = db
        self.policy = policy
        self.metadata = MetaData()
        self.table = Table(
            table_name,
            self.metadata,
            Column("attachment_id", String(64), primary_key=True),
            Column("filename", String(MAX_FILENAME), nullable=False),
            Column("content_type", String(100), nullable=False),
            Column("size", Integer, nullable=False),
            Column("sha256", String(64), nullable=False),
            Column("data", LargeBinary, nullable=False),
            Column("uploaded_by", String(64), nullable=False),
            Column("uploaded_at", UtcDateTime(), nullable=False),
        )

    async def create_tables(self) -> None:
        await self.db.create_tables(self.metadata)

    async def put(
        self, data: bytes, filename: str | None, uploaded_by: str, attachment_id: str | None = None
    ) -> StoredAttachment:
        """Check and keep a file (one insert: stored whole or not at all)."""
        name = clean_filename(filename)
        content_type = await check(data, name, self.policy)
        record = AttachmentRecord(
            attachment_id=attachment_id or str(uuid.uuid4()),
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        async with self.db.transaction() as conn:
            await conn.execute(
                self.table.insert().values(
                    **record.model_dump(),
                    filename=name,
                    data=data,
                    uploaded_by=uploaded_by,
                    uploaded_at=datetime.now(UTC),
                )
            )
        return StoredAttachment(record, name, uploaded_by)

    async def uploaded(
        self, attachment_ids: Sequence[str], field_name: str
    ) -> list[StoredAttachment]:
        """Uploaded files, in the order given; ``DomainError`` naming an unknown one."""
        if not attachment_ids:
            return []
        if len(set(attachment_ids)) != len(attachment_ids):
            raise DomainError(field_name, "an attachment is named twice")
        t = self.table
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    t.c.attachment_id, t.c.filename, t.c.content_type, t.c.size, t.c.sha256,
                    t.c.uploaded_by,
                ).where(t.c.attachment_id.in_(list(attachment_ids)))
            )  # fmt: skip
            found = {
                row.attachment_id: StoredAttachment(
                    AttachmentRecord(
                        attachment_id=row.attachment_id,
                        content_type=row.content_type,
                        size=row.size,
                        sha256=row.sha256,
                    ),
                    row.filename,
                    row.uploaded_by,
                )
                for row in rows
            }
        for attachment_id in attachment_ids:
            if attachment_id not in found:
                raise DomainError(field_name, f"no attachment {attachment_id}")
        return [found[a] for a in attachment_ids]

    async def content(self, attachment_id: str) -> tuple[AttachmentRecord, str, bytes] | None:
        t = self.table
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(t).where(t.c.attachment_id == attachment_id))).first()
        if row is None:
            return None
        record = AttachmentRecord(
            attachment_id=row.attachment_id,
            content_type=row.content_type,
            size=row.size,
            sha256=row.sha256,
        )
        return record, row.filename, bytes(row.data)

    async def forget(self, attachment_ids: Sequence[str]) -> None:
        """Erasure: the files go with their owner's key."""
        if attachment_ids:
            async with self.db.transaction() as conn:
                await conn.execute(
                    delete(self.table).where(self.table.c.attachment_id.in_(list(attachment_ids)))
                )
