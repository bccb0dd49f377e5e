"""Who sees which ticket (DESIGN §6), in one place for reads and commands.

* A client sees their own tickets; a company's client manager also the
  tickets of the company's current members (membership as the clients
  context last published it). Staff logged in as a client see exactly what
  that client sees.
* Staff need ``tickets.view`` and see the tickets of their departments; with
  ``tickets.all_departments`` (or full access) every ticket. Wherever a ticket
  is, the staff member it is assigned to sees it too.
* Threads opened by a message to a client have no department: they form the
  "messages" queue, seen by staff who may message clients (``clients.message``)
  besides the assignee (the sender, when they asked for replies to come to
  them) and ``tickets.all_departments``.

A ticket the caller may not see answers 404, as if it did not exist.

``staff_reasons`` and ``client_reasons`` are these rules once, naming each
reason that holds; the checks below are whether any does, so "who could see
this ticket at T, and why" (``app.viewers``) answers by the same rules.
"""

from __future__ import annotations

from typing import Protocol

from shared.access.control import Principal

VIEW = "tickets.view"
ALL_DEPARTMENTS = "tickets.all_departments"
MESSAGES = "clients.message"


def sees_all(principal: Principal) -> bool:
    return principal.kind == "staff" and principal.access.has(ALL_DEPARTMENTS)


def sees_messages(principal: Principal) -> bool:
    return principal.kind == "staff" and principal.access.has(MESSAGES)


class StaffRights(Protocol):
    """A staff member's access as visibility reads it (now, or as of some moment)."""

    @property
    def full_access(self) -> bool: ...
    @property
    def rights(self) -> frozenset[str]: ...
    @property
    def departments(self) -> tuple[str, ...]: ...
    def has(self, right: str) -> bool: ...


def staff_reasons(
    staff_id: str, access: StaffRights, department_id: str | None, assignee_id: str | None
) -> list[str]:
    """Why a staff member sees a ticket in ``department_id`` assigned to ``assignee_id``:
    ``full_access``, ``all_departments``, ``assignee``, ``department`` (a member of the
    ticket's), ``messages`` (the messages queue); empty when they do not."""
    if not access.has(VIEW):
        return []
    reasons = []
    if access.full_access:
        reasons.append("full_access")
    elif ALL_DEPARTMENTS in access.rights:
        reasons.append("all_departments")
    if assignee_id is not None and assignee_id == staff_id:
        reasons.append("assignee")
    if department_id is None:
        if access.has(MESSAGES):
            reasons.append("messages")
    elif department_id in access.departments:
        reasons.append("department")
    return reasons


def staff_may_see(principal: Principal, department_id: str | None, assignee_id: str | None) -> bool:
    """Whether a staff member sees a ticket in ``department_id`` assigned to ``assignee_id``."""
    return principal.kind == "staff" and bool(
        staff_reasons(principal.id, principal.access, department_id, assignee_id)
    )


def client_reasons(
    client_id: str,
    company_id: str | None,
    company_manager: bool,
    ticket_client_id: str,
    ticket_client_company: str | None,
) -> list[str]:
    """Why a client sees a ticket: ``client`` (theirs), ``company_manager`` (the client
    manager of the company the ticket's client belongs to); empty when they do not."""
    reasons = []
    if client_id == ticket_client_id:
        reasons.append("client")
    if company_manager and company_id and company_id == ticket_client_company:
        reasons.append("company_manager")
    return reasons


def client_may_see(
    principal: Principal, ticket_client_id: str, ticket_client_company: str | None
) -> bool:
    """Whether a client sees a ticket of ``ticket_client_id`` (a member of that company, if any)."""
    if principal.kind != "client":
        return False
    access = principal.access
    return bool(
        client_reasons(
            principal.id,
            access.company_id,
            access.company_manager,
            ticket_client_id,
            ticket_client_company,
        )
    )
