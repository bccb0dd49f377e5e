"""A cap on every request body, counted while it streams in (issue 17).

Rules: a body larger than the cap is answered 413 ``body_too_large`` and is
never read whole nor parsed: a ``Content-Length`` above the cap is refused
before the first byte is read; a body without one (chunked) is counted chunk
by chunk and refused the moment it passes the cap. Multipart uploads have
their own, larger cap (``MAX_UPLOAD_BYTES``: the 10 MB attachments), other
bodies ``MAX_BODY_BYTES`` (1 MiB: every JSON command is far below).
"""

from __future__ import annotations

import orjson
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024
# 10 MB of file plus the multipart framing and the other fields of the form.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024 + 64 * 1024


def too_large(cap: int) -> HTTPException:
    # An HTTPException passes FastAPI's body parsing as it is (others become a 400).
    return HTTPException(
        413, detail={"code": "body_too_large", "message": f"the body exceeds {cap} bytes"}
    )


class BodyLimitMiddleware:
    """Pure ASGI: refuses by the header, else counts what ``receive`` hands the app."""

    def __init__(
        self, app: ASGIApp, max_body: int = MAX_BODY_BYTES, max_upload: int = MAX_UPLOAD_BYTES
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.max_body
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-type" and value.startswith(b"multipart/form-data"):
                cap = self.max_upload
            elif name == b"content-length" and value.isdigit():
                declared = int(value)
        if declared is not None and declared > cap:
            await _refuse(send, cap)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise too_large(cap)
            return message

        await self.app(scope, counted, send)


async def _refuse(send: Send, cap: int) -> None:
    body = orjson.dumps(
        {"error": {"code": "body_too_large", "message": f"the body exceeds {cap} bytes"}}
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
