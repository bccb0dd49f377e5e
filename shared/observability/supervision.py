"""Background work that must keep running: retried with a growing pause when it fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("supervision")

FIRST_PAUSE = 0.5
LONGEST_PAUSE = 10.0


def problem_text(error: BaseException) -> str:
    """How a failure reads under ``problems`` and in logs: its type and message."""
    return f"{type(error).__name__}: {error}"


async def retry_forever(
    name: str, work: Callable[[], Awaitable[None]], problems: dict[str, str]
) -> None:
    """Run ``work`` until it returns; each failure is logged, kept in ``problems``
    under ``name`` (what ``/ready`` shows), and retried after a pause that doubles
    up to ten seconds."""
    delay = FIRST_PAUSE
    while True:
        try:
            await work()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            problems[name] = problem_text(exc)
            log.warning("task.failed", task=name, error=problems[name], retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, LONGEST_PAUSE)
