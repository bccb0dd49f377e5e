"""What the console remembers for a few seconds, so that every page does not ask again.

A queue or ticket page used to make, besides the call it shows, one call for the
user (``GET /me``) and one for the department names (``GET /support/departments``),
each the same answer as a moment before; at a page every second or two per
member, they were most of the page's time (docs/benchmarks.md, console). The
memory itself is the kernel's ``shared.application.recent.Recent`` (expiry from
the moment asked, bounded, an answer asked before a forget not kept); this
module says what the console keeps in it.

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
* Per process and bounded (``Recent``'s ``SIZE`` entries, the oldest dropped
  first): lost at a restart, never shared between replicas, so the console still
  keeps no state that matters and scales by replicas.
"""

from __future__ import annotations

import hashlib

ME_SECONDS = 5.0
DEPARTMENTS_SECONDS = 10.0


def token_key(token: str) -> bytes:
    """The key of a token's answers (its hash: the token itself is not kept)."""
    return hashlib.sha256(token.encode()).digest()
