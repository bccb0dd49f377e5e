"""Files attached to messages, as events name them: the record, the rules for names and types.

Pure (no I/O): the bytes are kept by ``shared.readmodel.attachments``, downloads
served by ``shared.http.downloads``. Rules it keeps:

* the type is decided here, never taken from the uploader: from the file name's
  extension, and for types with a known signature (images, PDF, ZIP, gzip) the
  bytes must start with it (a ``.png`` that is an HTML page is refused);
* the file name is cut to a plain name (no path, no control characters);
* the record (``AttachmentRecord``: id, content type, size, SHA-256) goes into
  events; the file names are the client's personal data and travel sealed, as one
  text (``names_text`` / ``names_of``).
"""

from __future__ import annotations

import mimetypes
import unicodedata
from collections.abc import Sequence

import orjson
from pydantic import BaseModel, ConfigDict

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


def clean_filename(filename: str | None) -> str:
    """A plain file name: no folders, no control characters, at most ``MAX_FILENAME``."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip(" .")
    return name[:MAX_FILENAME] or "attachment"


def content_type_of(filename: str) -> str:
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or ""


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
