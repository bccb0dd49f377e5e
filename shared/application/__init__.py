"""The application layer's one move, the same in every service.

* ``commands`` – load an aggregate, let it decide, append what it decided.
"""

from shared.application.commands import (
    RETRY_ATTEMPTS,
    RETRY_PAUSE_STEP,
    CommandAnswer,
    load,
    rebuild,
    append,
    Decision,
    decide_and_append,
)

__all__ = [
    "CommandAnswer",
    "Decision",
    "RETRY_ATTEMPTS",
    "RETRY_PAUSE_STEP",
    "append",
    "decide_and_append",
    "load",
    "rebuild",
]
