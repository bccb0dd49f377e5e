"""Message attachments: the bytes live in the service's database, the events carry a record."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, select

from services.clients.domain.events import Attachment
from shared.domain.aggregate import DomainError
from shared.readmodel.database import ReadModelDB, UtcDateTime

MAX_BYTES = 10 * 1024 * 1024
MAX_FILENAME = 200

metadata = MetaData()

attachments = Table(
    "message_attachments",
    metadata,
    Column("attachment_id", String(64), primary_key=True),
    Column("filename", String(MAX_FILENAME), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("uploaded_by", String(64), nullable=False),
    Column("uploaded_at", UtcDateTime(), nullable=False),
)


class AttachmentStore:
    def __init__(self, db: ReadModelDB) -> None:
        self.db = db

    async def create_tables(self) -> None:
        await self.db.create_tables(metadata)

    async def put(
        self, data: bytes, filename: str | None, content_type: str | None, uploaded_by: str
    ) -> Attachment:
        """Keep an uploaded file; messages then name it by ``attachment_id``."""
        if not data:
            raise DomainError("file", "the file is empty")
        if len(data) > MAX_BYTES:
            raise DomainError("file", f"at most {MAX_BYTES // (1024 * 1024)} MB")
        name = (filename or "attachment").replace("/", "_").replace("\\", "_")[:MAX_FILENAME]
        record = Attachment(
            attachment_id=str(uuid.uuid4()),
            filename=name,
            content_type=(content_type or "application/octet-stream")[:100],
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        async with self.db.transaction() as conn:
            await conn.execute(
                attachments.insert().values(
                    **record.model_dump(),
                    data=data,
                    uploaded_by=uploaded_by,
                    uploaded_at=datetime.now(UTC),
                )
            )
        return record

    async def records(self, attachment_ids: list[str]) -> list[Attachment]:
        """The records of uploaded files, in the order given; 422 naming an unknown one."""
        if not attachment_ids:
            return []
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    attachments.c.attachment_id,
                    attachments.c.filename,
                    attachments.c.content_type,
                    attachments.c.size,
                    attachments.c.sha256,
                ).where(attachments.c.attachment_id.in_(attachment_ids))
            )
            found = {row.attachment_id: Attachment(**row._mapping) for row in rows}
        for attachment_id in attachment_ids:
            if attachment_id not in found:
                raise DomainError("attachments", f"no attachment {attachment_id}")
        return [found[a] for a in attachment_ids]

    async def content(self, attachment_id: str) -> tuple[Attachment, bytes] | None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(attachments).where(attachments.c.attachment_id == attachment_id)
                )
            ).first()
        if row is None:
            return None
        record = Attachment(
            attachment_id=row.attachment_id,
            filename=row.filename,
            content_type=row.content_type,
            size=row.size,
            sha256=row.sha256,
        )
        return record, bytes(row.data)
