"""What a copy may store of another context's fact: texts clipped, ids and addresses checked.

A copy's columns have widths (``String(200)`` for a name, ``String(64)`` for an
id). PostgreSQL refuses a longer value, the consumer's transaction fails, and
the fact would stall every later fact of its partition (until parked as a dead
letter, ``shared.messaging.consumer``). The sources refuse over-long input
(422 naming the field), but a topic keeps facts published before they did, so
every copy also reads a fact through these rules:

* a name or other display text is clipped to ``NAME_MAX`` (shown shortened,
  never refused: the rest of the fact still applies);
* an id longer than ``ID_MAX`` makes the fact malformed: the copy logs and skips
  it (a clipped id would name another entity);
* an e-mail address longer than ``ADDRESS_MAX`` or a phone longer than
  ``PHONE_MAX`` is left out (None): a clipped address reaches someone else;
* an integer stored in an ``Integer`` column is brought within ``INT_MIN``..``INT_MAX``
  (a sort order: the rest of the fact still applies).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StringConstraints

NAME_MAX = 200  # staff, department and company names in copies: String(200)
ID_MAX = 64  # every id column of a copy: String(64)
ADDRESS_MAX = 320  # an e-mail address (RFC 5321's path limit)
PHONE_MAX = 64  # the notifier's String(64)
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # PostgreSQL's integer


def clip(value: Any, limit: int = NAME_MAX) -> str | None:
    """``value`` as text of at most ``limit`` characters (None stays None)."""
    return None if value is None else str(value)[:limit]


def fitting(value: Any, limit: int) -> str | None:
    """``value`` as text when it fits in ``limit`` characters, else None (left out)."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else None


def fact_id(value: Any) -> str | None:
    """An id a copy can key a row with: a non-empty text of at most ``ID_MAX``; else None."""
    return value if isinstance(value, str) and 0 < len(value) <= ID_MAX else None


# For copies that read facts through pydantic models: a too long id fails validation
# (the fact is logged and skipped), a name is clipped, an address that does not fit
# is dropped, an integer is brought within a column's range.
FactId = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX)]
# A reference a fact may carry or not (a client's project): one that does not fit is
# left out rather than losing the whole fact.
OptionalId = Annotated[str | None, BeforeValidator(fact_id)]
ClippedName = Annotated[str, AfterValidator(lambda v: v[:NAME_MAX])]
FittingAddress = Annotated[str | None, BeforeValidator(lambda v: fitting(v, ADDRESS_MAX))]
ColumnInt = Annotated[int, AfterValidator(lambda v: max(INT_MIN, min(INT_MAX, v)))]
