"""The application layer's one move, the same in every service.

* ``commands`` – load an aggregate, let it decide, append what it decided.
* ``grouping`` – group commit: callers waiting at the same moment served by one
  round (one transaction), each with its own answer.
* ``recent`` – another service's answers remembered for a few seconds (bounded,
  forgotten per key or all at once; an answer asked before a forget not kept).
* ``waiting`` – a command naming another context's entity created a moment ago
  waits, a bounded time, for this service's copy to know it.
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
from shared.application.waiting import COPY_WAIT_SECONDS, until_known

__all__ = [
    "COPY_WAIT_SECONDS",
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
    "until_known",
]
