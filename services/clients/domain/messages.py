"""Messages to clients: the text each client gets, in their language, with macros filled.

A message's subject and text are given per language (``{"en": .., "ru": ..}``,
or one string meaning English). Each client gets the text of their interface
language; without it, a strict send skips the client, a lenient one falls
back to English (or the first language given). Macros are filled per client:

* ``%client_person%`` – the client's contact person (their login if none);
* ``%admin_name%`` – the name of the staff member who sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.clients.domain.client import check_language, check_penalty
from services.clients.domain.events import Violation
from shared.domain.aggregate import DomainError

MACROS = ("%client_person%", "%admin_name%")
MAX_SUBJECT = 200
MAX_TEXT = 20_000
MAX_COMMENT = 2000
FALLBACK = "en"


@dataclass(frozen=True)
class Texts:
    """A message's subject and text per language code."""

    subjects: dict[str, str]
    bodies: dict[str, str]

    @classmethod
    def of(cls, subject: str | dict[str, str], text: str | dict[str, str]) -> Texts:
        subjects = _per_language(subject, "subject", MAX_SUBJECT)
        bodies = _per_language(text, "text", MAX_TEXT)
        if set(subjects) != set(bodies):
            raise DomainError("text", "give the text in the same languages as the subject")
        return cls(subjects, bodies)

    def language_for(self, client_language: str, strict: bool) -> str | None:
        """Which language the client gets; None: skip them (strict and no text in theirs)."""
        if client_language in self.bodies:
            return client_language
        if strict:
            return None
        return FALLBACK if FALLBACK in self.bodies else next(iter(self.bodies))


def _per_language(value: str | dict[str, str], field: str, limit: int) -> dict[str, str]:
    given = {FALLBACK: value} if isinstance(value, str) else dict(value)
    if not given:
        raise DomainError(field, "required")
    out: dict[str, str] = {}
    for language, content in given.items():
        try:
            code = check_language(language)
        except DomainError:
            raise DomainError(f"{field}.{language}", "not an ISO 639-1 language code") from None
        clean = content.strip()
        if not clean:
            raise DomainError(f"{field}.{language}" if isinstance(value, dict) else field, "empty")
        if len(clean) > limit:
            raise DomainError(field, f"at most {limit} characters")
        out[code] = clean
    return out


def fill(template: str, client_person: str, admin_name: str) -> str:
    """The template with the macros filled for one client."""
    return template.replace("%client_person%", client_person).replace("%admin_name%", admin_name)


def check_violation(violation: Violation, now: datetime) -> Violation:
    if violation.deadline.tzinfo is None:
        raise DomainError("violation.deadline", "give a time zone (e.g. 2026-12-01T12:00:00Z)")
    if violation.deadline <= now:
        raise DomainError("violation.deadline", "must be in the future")
    check_penalty(violation.penalty_points)
    if len(violation.comment) > MAX_COMMENT:
        raise DomainError("violation.comment", f"at most {MAX_COMMENT} characters")
    return violation
