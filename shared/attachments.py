"""Files attached to messages: the bytes in the service's database, a record in the events.

Rules kept here, for every service that takes files (the tickets' messages,
the mail gateway):

* an upload is refused with a 422 naming ``file`` when it is empty, larger
  than the policy's cap, of a type outside the allow-list, or rejected by the
  virus scanner; nothing is stored then;
* the type is decided here, never taken from the uploader: from the file
  name's extension, and for types with a known signature (images, PDF, ZIP,
  gzip) the bytes must start with it (a ``.png`` that is an HTML page is refused);
* the file name is cut to a plain name (no path, no control characters);
* a download is always ``Content-Disposition: attachment`` with
  ``X-Content-Type-Options: nosniff`` and a sandboxing CSP, so a browser
  never renders an uploaded file as a page of ours;
* the virus scanner is a hook (``Scanner``): ``ATTACHMENT_SCAN_COMMAND`` runs
  a command (``clamdscan --no-summary -``) with the file on its stdin, and a
  non-zero exit refuses the file; a scanner that cannot run refuses too
  (fail closed).

The record (``AttachmentRecord``: id, content type, size, SHA-256) goes into
events; the file name is the client's personal data and travels sealed
(``names_text`` / ``names_of``).
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import shlex
import unicodedata
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import orjson
from fastapi import Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, delete, select

from shared.domain import DomainError
from shared.readmodel import ReadModelDB, UtcDateTime

MAX_FILENAME = 200

DEFAULT_TYPES: frozenset[str] = frozenset(
    {
        "text/plain",
        "text/csv",
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/zip",
        "application/gzip",
        "application/x-tar",
        "message/rfc822",
        "application/json",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
    }
)
"""What support takes by default: documents, images, logs, archives; no executables,
no HTML or SVG (a browser would run their scripts)."""

# The first bytes a file of these types has: a name ending in .png is not enough.
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
    "application/zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "application/gzip": (b"\x1f\x8b",),
}
# Office documents are ZIP files.
for _office in (
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
):
    SIGNATURES[_office] = SIGNATURES["application/zip"]

_EXTRA_TYPES = {".log": "text/plain", ".eml": "message/rfc822", ".webp": "image/webp"}


class AttachmentRecord(BaseModel):
    """What an event says of a file: its bytes stay in the service's database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attachment_id: str
    content_type: str
    size: int
    sha256: str


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


def clean_filename(filename: str | None) -> str:
    """A plain file name: no folders, no control characters, at most ``MAX_FILENAME``."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip(" .")
    return name[:MAX_FILENAME] or "attachment"


def content_type_of(filename: str) -> str:
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or ""


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


def names_text(names: Sequence[str]) -> str | None:
    """File names of a message's attachments, as one sealable text (None: no files)."""
    return orjson.dumps(list(names)).decode() if names else None


def names_of(text: str | None, count: int) -> list[str | None]:
    """The names back (None for each once the text is unreadable: erased)."""
    if text:
        try:
            names = orjson.loads(text)
        except orjson.JSONDecodeError:
            names = None
        if isinstance(names, list) and len(names) == count:
            return [str(n) for n in names]
    return [None] * count


def download(filename: str | None, content_type: str, data: bytes) -> Response:
    """The file as a download a browser saves and never renders."""
    name = filename or "attachment"
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    disposition = (
        f'attachment; filename="{ascii_name}"; '
        f"filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
    )
    return Response(
        data,
        media_type=content_type,
        headers={
            "Content-Disposition": disposition,
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "private, no-store",
        },
    )


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
