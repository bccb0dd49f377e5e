"""Staff avatars: checked with Pillow, stored outside the event log under their hash.

The event (``AvatarChanged``) carries only the SHA-256, the type and the size;
the image bytes live in identity's database, so the log stays small and an
erased image does not linger in every replay.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, select

from shared.domain.aggregate import DomainError
from shared.readmodel.database import ReadModelDB

MAX_BYTES = 64 * 1024
SIZE = (80, 80)
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif"}
EXTENSIONS = {"png", "jpg", "jpeg", "gif"}

metadata = MetaData()
avatars = Table(
    "avatars",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("content_type", String(32), nullable=False),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)


@dataclass(frozen=True)
class Avatar:
    sha256: str
    content_type: str
    data: bytes


def check_avatar(data: bytes, filename: str | None) -> Avatar:
    """A valid avatar, or ``DomainError`` on the field ``avatar`` saying what is wrong."""
    if not data:
        raise DomainError("avatar", "the file is empty")
    if len(data) > MAX_BYTES:
        raise DomainError("avatar", f"at most 64 KB, this one is {len(data) / 1024:.1f} KB")
    if filename and "." in filename and filename.rsplit(".", 1)[1].lower() not in EXTENSIONS:
        raise DomainError("avatar", "png, jpg, jpeg or gif files only")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()  # reads the whole file: a truncated or corrupt one fails here
            kind, size = image.format, image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise DomainError("avatar", "not a readable png, jpg or gif image") from None
    if kind not in FORMATS:
        raise DomainError("avatar", f"png, jpg or gif images only, not {kind}")
    if size != SIZE:
        raise DomainError("avatar", f"must be 80x80 pixels, this one is {size[0]}x{size[1]}")
    return Avatar(hashlib.sha256(data).hexdigest(), FORMATS[kind], data)


class AvatarStore:
    def __init__(self, db: ReadModelDB) -> None:
        self.db = db

    async def create_tables(self) -> None:
        await self.db.create_tables(metadata)

    async def put(self, avatar: Avatar) -> None:
        """Keep the image (once per hash: the same picture twice is one row)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                self.db.insert_ignoring_duplicates(
                    avatars,
                    sha256=avatar.sha256,
                    content_type=avatar.content_type,
                    size=len(avatar.data),
                    data=avatar.data,
                )
            )

    async def get(self, sha256: str) -> Avatar | None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(avatars.c.content_type, avatars.c.data).where(avatars.c.sha256 == sha256)
                )
            ).first()
        return None if row is None else Avatar(sha256, row.content_type, bytes(row.data))
