"""Errors of the departments domain.

They are the kernel's typed domain errors (``shared.domain``), re-exported, so
``shared.service`` maps them onto the API without a departments-specific
handler: ``DomainError`` → 422 naming the field, ``NotFound`` → 404,
``Conflict`` → 409 with its code, ``Forbidden`` → 403 with its code.
"""

from __future__ import annotations

from shared.domain import Conflict, DomainError, Forbidden, NotFound

__all__ = ["Conflict", "DomainError", "Forbidden", "NotFound"]
