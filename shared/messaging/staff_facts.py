"""Identity's published staff facts as every other context reads them: one decoder.

Identity publishes ``StaffAdded``, ``StaffChanged`` (only what changed is set)
and ``StaffDisabled`` on ``identity.events``. Tickets and clients keep staff names
(``%admin_name%``, who answered), the notifier keeps names and addresses; they
all decode the facts here, not each in its own way.

Rules it keeps:

* A fact that is not a staff fact, or lacks a staff id, decodes to None: a copy
  skips it. Fields a fact does not set are None ("unchanged").
* What it hands on fits what a copy stores (``shared.messaging.limits``): names
  clipped to ``NAME_MAX``; an e-mail over ``ADDRESS_MAX`` or a phone over
  ``PHONE_MAX`` left out (a clipped address reaches someone else); a staff id
  over ``ID_MAX`` makes no fact; department ids over it are left out. So one
  oversized fact can never make a copy's insert fail and stall its partition.
* ``staff_names_table`` is the one shape of a staff-names copy;
  ``record_staff_name`` keeps one (an upsert per fact that names someone).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.domain.events import RecordedEvent
from shared.messaging.limits import (
    ADDRESS_MAX,
    ID_MAX,
    NAME_MAX,
    PHONE_MAX,
    clip,
    fact_id,
    fitting,
)
from shared.readmodel.database import upsert

STAFF_FACTS = frozenset({"StaffAdded", "StaffChanged", "StaffDisabled"})


@dataclass(frozen=True)
class StaffFact:
    """What a copy may learn from one staff fact (None: not said by this fact)."""

    staff_id: str
    added: bool = False
    disabled: bool = False
    name_en: str | None = None
    name_ru: str | None = None
    email: str | None = None
    phone: str | None = None
    departments: tuple[str, ...] | None = None

    @property
    def names(self) -> dict[str, str] | None:
        """``{"name_en", "name_ru"}`` when the fact names the member."""
        if self.name_en is None:
            return None
        return {"name_en": self.name_en, "name_ru": self.name_ru or ""}


def staff_fact(event: RecordedEvent) -> StaffFact | None:
    """The staff fact ``event`` carries, or None when it carries none."""
    if event.type not in STAFF_FACTS:
        return None
    data = event.data
    staff_id = fact_id(data.get("staff_id"))
    if staff_id is None:
        return None
    name = data.get("full_name")
    name_en = name_ru = None
    if isinstance(name, dict):
        name_en = clip(name.get("en", ""), NAME_MAX)
        name_ru = clip(name.get("ru", ""), NAME_MAX)
    departments = data.get("departments")
    return StaffFact(
        staff_id=staff_id,
        added=event.type == "StaffAdded",
        disabled=event.type == "StaffDisabled",
        name_en=name_en,
        name_ru=name_ru,
        email=fitting(data.get("email"), ADDRESS_MAX),
        phone=fitting(data.get("phone"), PHONE_MAX),
        departments=(
            tuple(d for d in map(fact_id, departments) if d is not None)
            if isinstance(departments, list)
            else None
        ),
    )


def staff_names_table(metadata: MetaData) -> Table:
    """The shape of every staff-names copy (``staff_names``)."""
    return Table(
        "staff_names",
        metadata,
        Column("staff_id", String(ID_MAX), primary_key=True),
        Column("name_en", String(NAME_MAX), nullable=False),
        Column("name_ru", String(NAME_MAX), nullable=False),
    )


async def record_staff_name(conn: AsyncConnection, table: Table, event: RecordedEvent) -> None:
    """Keep ``table`` (a ``staff_names_table``) up to date with one fact of ``identity.events``."""
    fact = staff_fact(event)
    if fact is not None and fact.names is not None:
        await upsert(conn, table, {"staff_id": fact.staff_id, **fact.names})
