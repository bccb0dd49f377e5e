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
"""

from __future__ import annotations

from shared.access.control import Principal

VIEW = "tickets.view"
ALL_DEPARTMENTS = "tickets.all_departments"
MESSAGES = "clients.message"


def sees_all(principal: Principal) -> bool:
    return principal.kind == "staff" and principal.access.has(ALL_DEPARTMENTS)


def sees_messages(principal: Principal) -> bool:
    return principal.kind == "staff" and principal.access.has(MESSAGES)


def staff_may_see(principal: Principal, department_id: str | None, assignee_id: str | None) -> bool:
    """Whether a staff member sees a ticket in ``department_id`` assigned to ``assignee_id``."""
    if principal.kind != "staff" or not principal.access.has(VIEW):
        return False
    if sees_all(principal) or assignee_id == principal.id:
        return True
    if department_id is None:
        return sees_messages(principal)
    return department_id in principal.access.departments


def client_may_see(
    principal: Principal, ticket_client_id: str, ticket_client_company: str | None
) -> bool:
    """Whether a client sees a ticket of ``ticket_client_id`` (a member of that company, if any)."""
    if principal.kind != "client":
        return False
    if ticket_client_id == principal.id:
        return True
    company = principal.access.company_id
    return bool(principal.access.company_manager and company and company == ticket_client_company)
