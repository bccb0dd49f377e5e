"""The application layer's one move, the same in every service.

* ``commands`` – load an aggregate, let it decide, append what it decided.
"""

from shared.application.commands import (
    RETRY_ATTEMPTS,
    RETRY_PAUSE_STEP,
    CommandAnswer,
    Decision,
    append,
    decide_and_append,
    load,
    rebuild,
)

__all__ = [
    "RETRY_ATTEMPTS",
    "RETRY_PAUSE_STEP",
    "CommandAnswer",
    "Decision",
    "append",
    "decide_and_append",
    "load",
    "rebuild",
]
