"""Domain-layer mechanics shared by every context: aggregates and typed domain errors.

An aggregate is rebuilt from its events (``apply``) and answers a command with
new events (never by mutating itself directly); the application layer appends
them with the version it loaded, so a concurrent change is a typed conflict.
The errors below map onto the API's 422 / 403 / 404 / 409 / 402 / 503 in ``shared.runtime.service``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Self

from shared.domain.events import DomainEvent


class DomainError(Exception):
    """A command broke a rule about one field (→ 422 naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(Exception):
    """The aggregate does not exist, or no longer (→ 404)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class Conflict(Exception):
    """The command contradicts the current state (→ 409 with ``code``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Forbidden(Exception):
    """The actor may not do this to this object, whatever its rights (→ 403 with ``code``).

    ``field`` names the part of the command that asked too much, when one does.
    """

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class PaymentRequired(Exception):
    """The command needs something paid for that is used up (→ 402 with ``code``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Unavailable(Exception):
    """Another service this command needs did not answer; nothing was decided (→ 503)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Aggregate:
    """Base of event-sourced aggregates: ``version`` counts the events applied.

    ``handles`` names the event types ``apply`` cares about; loading skips
    (does not even decode) the others that share the stream.
    """

    handles: ClassVar[frozenset[str] | None] = None

    def __init__(self) -> None:
        self.version = 0

    def apply(self, event: DomainEvent) -> None:
        """Change state for one past event; subclasses dispatch on the event type."""
        raise NotImplementedError

    def applied(self, events: Iterable[DomainEvent]) -> Self:
        for event in events:
            self.apply(event)
            self.version += 1
        return self
