"""The departments that exist from the first start (DESIGN §1): Sales and Technical support.

Their ids are fixed (uuid5 of a namespace and the English name), so replicas
starting together write to the same streams: the application layer appends
with expected version "no stream", and a conflict means another replica has
already created the department. Technical support, which receives clients'
requests, starts with the support-center functions it needs to work its own
queue (never ``tickets.all_departments``: each department sees its own
tickets); Sales starts with no rights. They are ordinary departments
afterwards: they may be changed or deleted. A store that already holds them
keeps them as they are.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.departments.domain.department import Department
from services.departments.domain.events import LocalizedText, Support
from shared.domain.events import DomainEvent

# Never change: the ids below, and so the streams already written, derive from it.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:provider-backoffice:departments:defaults")


def default_id(english_name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, english_name))


@dataclass(frozen=True, slots=True)
class DefaultDepartment:
    department_id: str
    name: LocalizedText
    support: Support
    rights: tuple[str, ...] = ()

    def events(self) -> list[DomainEvent]:
        """What creating it writes into its stream: the department, then its rights."""
        events = Department.create(self.department_id, self.name, support=self.support)
        department = Department.rebuilt(events)
        for right in self.rights:
            turned = department.set_right(right, True)
            department.applied(turned)
            events += turned
        return events


SALES = DefaultDepartment(
    department_id=default_id("Sales"),
    name=LocalizedText(en="Sales", ru="Продажи"),
    support=Support(enabled=False),
)
TECHNICAL_SUPPORT = DefaultDepartment(
    department_id=default_id("Technical support"),
    name=LocalizedText(en="Technical support", ru="Техническая поддержка"),
    support=Support(enabled=True),
    rights=(
        "tickets.view",
        "tickets.reply",
        "tickets.internal_note",
        "tickets.assign",
        "tickets.transfer",
        "tickets.close",
        "tickets.reopen",
    ),
)
DEFAULT_DEPARTMENTS: tuple[DefaultDepartment, ...] = (SALES, TECHNICAL_SUPPORT)
