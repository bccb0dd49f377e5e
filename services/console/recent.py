"""What the console remembers for a few seconds, so that every page does not ask again.

A queue or ticket page used to make, besides the call it shows, one call for the
user (``GET /me``) and one for the department names (``GET /support/departments``),
each the same answer as a moment before; at a page every second or two per
member, they were most of the page's time (docs/benchmarks.md, console).

Rules it keeps:

* Two answers only: a session's ``GET /me`` (per token, ``ME_SECONDS``) and the
  support departments as staff see them (one list for every staff member,
  ``DEPARTMENTS_SECONDS``). Everything else is asked for at every page.
* What a user may do is still decided by the service at each call with their
  own token: a right granted or revoked shows in the page's links at most
  ``ME_SECONDS`` later, and a revoked one is refused at once.
* A session's own write forgets its ``/me``: any call but a GET made with the
  token, when it has answered (or failed), so the next page shows what the write
  changed (a password, the second factor, a name); an answer asked for before
  that moment is not kept (it may predate the write).
* Tokens are never keys: the SHA-256 of a token is.
* Per process and bounded (``SIZE`` entries, the oldest dropped first): lost at a
  restart, never shared between replicas, so the console still keeps no state
  that matters and scales by replicas.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

ME_SECONDS = 5.0
DEPARTMENTS_SECONDS = 10.0
SIZE = 10_000

_FORGOTTEN = object()


def token_key(token: str) -> bytes:
    """The key of a token's answers (its hash: the token itself is not kept)."""
    return hashlib.sha256(token.encode()).digest()


class Recent:
    """Answers by key for ``seconds`` from the moment each was asked for."""

    def __init__(
        self, seconds: float, size: int = SIZE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds, self.size, self.clock = seconds, size, clock
        # key -> (when it was asked for, or forgotten; the answer or _FORGOTTEN)
        self._entries: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()

    def get(self, key: bytes) -> Any | None:
        """The answer kept for ``key``, or None (never asked, too old, or forgotten)."""
        found = self._entries.get(key)
        if found is None or found[1] is _FORGOTTEN or self.clock() - found[0] >= self.seconds:
            return None
        return found[1]

    def put(self, key: bytes, answer: Any, asked_at: float) -> None:
        """Keep ``answer``, asked for at ``asked_at`` (``clock()`` before the call), unless
        ``key`` was forgotten since: the answer may predate what made it forget."""
        found = self._entries.get(key)
        if found is not None and found[1] is _FORGOTTEN and found[0] >= asked_at:
            return
        self._set(key, (asked_at, answer))

    def forget(self, key: bytes) -> None:
        # A mark, not a deletion: an answer asked for before now and on its way is not kept.
        self._set(key, (self.clock(), _FORGOTTEN))

    def _set(self, key: bytes, value: tuple[float, Any]) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
