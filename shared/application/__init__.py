"""The application layer's one move, the same in every service.

* ``commands`` – load an aggregate, let it decide, append what it decided.
* ``recent`` – another service's answers remembered for a few seconds (bounded,
  forgotten per key or all at once; an answer asked before a forget not kept).
"""

from shared.application.commands import (
    RETRY_ATTEMPTS,
    RETRY_PAUSE_STEP,
    CommandAnswer,
    Decision,
    append,
    check_seen,
    decide_and_append,
    load,
    rebuild,
)
from shared.application.recent import Asked, Recent

__all__ = [
    "RETRY_ATTEMPTS",
    "RETRY_PAUSE_STEP",
    "Asked",
    "CommandAnswer",
    "Decision",
    "Recent",
    "append",
    "check_seen",
    "decide_and_append",
    "load",
    "rebuild",
]
