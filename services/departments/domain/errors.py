"""Errors of the departments domain.

They are the kernel's typed domain errors (``shared.domain.aggregate``), re-exported, so
``shared.runtime.service`` maps them onto the API without a departments-specific
handler: ``DomainError`` → 422 naming the field, ``NotFound`` → 404,
``Conflict`` → 409 with its code, ``Forbidden`` → 403 with its code.
"""

from __future__ import annotations

from shared.domain import Forbidden
from shared.domain.aggregate import Conflict, DomainError, NotFound

__all__ = ["Conflict", "DomainError", "Forbidden", "NotFound"]
