"""Serve a FastAPI app over real HTTP (uvicorn on a free port) inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import httpx
import uvicorn
from fastapi import FastAPI

from devtools.devbroker import free_port

T = TypeVar("T")


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Run ``app`` (with its lifespan) until the block ends; yields its base URL."""
    port = free_port()
    # A long keep-alive: the test's client shares this event loop, and on a loaded
    # machine a pooled connection idle past uvicorn's 5 s could be closed by the
    # server just as the client reuses it (httpx.ReadError on a POST, seen in runs).
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="on",
            timeout_keep_alive=300,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def eventually(
    call: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    timeout: float = 30,
) -> T:
    """Poll ``call`` until ``ok(answer)``; fail with the last answer after ``timeout`` s."""
    started = time.monotonic()
    while True:
        answer = await call()
        if ok(answer):
            return answer
        assert time.monotonic() - started < timeout, f"still {_described(answer)}"
        await asyncio.sleep(0.05)


def _described(answer: object) -> str:
    if isinstance(answer, httpx.Response):
        return f"{answer.status_code}: {answer.text}"
    return repr(answer)
