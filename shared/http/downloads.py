"""Files served over HTTP: always a download that a browser saves and never renders.

``Content-Disposition: attachment`` with ``X-Content-Type-Options: nosniff`` and a
sandboxing CSP, so an uploaded file can never run as a page of ours.
"""

from __future__ import annotations

import urllib.parse

from fastapi import Response


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
