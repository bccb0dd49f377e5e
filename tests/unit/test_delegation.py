"""Delegation rules of identity's and departments' deciders, as a matrix (issue 17).

Each command that moves rights (a grant, a revocation, a place in a
department, a department's right turned on or off, full access) is tried by a
grantor with and without full access, on their own account and on another's,
on a member with and without full access, holding the rights that move or not.
The functions that manage rights (``staff.rights``, ``departments.rights``) are
never handed on, by anyone, and never held without full access.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from services.departments.domain.defaults import SALES, TECHNICAL_SUPPORT
from services.departments.domain.department import Department, effective
from services.departments.domain.events import DepartmentRightEnabled, LocalizedText
from services.identity.domain.events import LocalizedName, PasswordChanged, RightGranted
from services.identity.domain.staff import Staff
from shared.access import IpPolicy, StaffAccessChanged, access_from_event
from shared.access.delegation import SYSTEM, Grantor
from shared.domain import Conflict, DomainError, Forbidden, NotFound
from shared.domain import rights as catalogue
from shared.domain.events import DomainEvent

BILLING = "billing"
SUPPORT = "support"
DEPARTMENT_RIGHTS = {
    BILLING: frozenset({"clients.view", "clients.edit"}),
    SUPPORT: frozenset({"tickets.view", "tickets.reply"}),
}
KNOWN = set(DEPARTMENT_RIGHTS)

# A member without full access who holds the staff section and what Billing gives.
HOLDER_RIGHTS = catalogue.expand(["staff", "clients.view", "clients.edit"])


def member(staff_id: str, *, full_access: bool = False, departments: tuple[str, ...] = ()) -> Staff:
    return Staff().applied(
        Staff.add(
            staff_id,
            f"login-{staff_id}",
            LocalizedName(en=staff_id),
            None,
            None,
            list(departments),
            KNOWN,
            full_access=full_access,
        )
    )


def grantor(
    staff_id: str, *, full_access: bool, departments: frozenset[str] = frozenset()
) -> Grantor:
    return Grantor(
        id=staff_id, full_access=full_access, rights=HOLDER_RIGHTS, departments=departments
    )


def outcome(decide: Callable[[], list[DomainEvent]]) -> str:
    try:
        decide()
    except Forbidden as refused:
        return refused.code
    return "ok"


# ---------------------------------------------------------------- the matrix


COMMANDS: dict[str, Callable[[Staff, Grantor], list[DomainEvent]]] = {
    "grant a held right": lambda s, by: s.grant("clients.view", by),
    "grant an unheld right": lambda s, by: s.grant("finance.invoices", by),
    "grant an unheld section": lambda s, by: s.grant("clients", by),
    "grant a function that manages rights": lambda s, by: s.grant("staff.rights", by),
    "revoke a held right": lambda s, by: s.revoke("staff.view", DEPARTMENT_RIGHTS, by),
    "place in a held department": lambda s, by: s.change(
        KNOWN, by=by, department_rights=DEPARTMENT_RIGHTS, departments=[BILLING]
    ),
    "place in an unheld department": lambda s, by: s.change(
        KNOWN, by=by, department_rights=DEPARTMENT_RIGHTS, departments=[SUPPORT]
    ),
    "give full access": lambda s, by: s.change(KNOWN, by=by, full_access=True),
    "change the IP policy": lambda s, by: s.change(
        KNOWN, by=by, ip_policy=IpPolicy(mode="list", allowed=["10.0.0.0/8"])
    ),
    "set the password": lambda s, by: s.set_password(by),
    "disable": lambda s, by: s.disable(by),
}


def expected(command: str, by_full: bool, own: bool, target_full: bool) -> str:
    """What the rules of ``shared.access.delegation`` say, written out case by case."""
    moves_access = command.startswith(("grant", "revoke", "place", "give"))
    if command == "grant a function that manages rights":
        return "full_access_only"  # by anyone, to anyone: full access is the way
    if own:
        if command == "give full access" and target_full:
            return "ok"  # nothing changes: no event, nothing to refuse
        return "own_access" if moves_access else "ok"
    if target_full and not by_full:
        return "full_access_member"
    if command == "give full access":
        return "ok" if by_full else "full_access_required"
    if "unheld" in command and not by_full:
        return "right_not_held"
    return "ok"


# One's own account has the grantor's own full-access flag; disabling oneself
# is refused by the application layer (409 cannot_disable_self), not here.
CASES = [
    (command, by_full, own, target_full)
    for command, by_full, own, target_full in itertools.product(
        COMMANDS, [True, False], [True, False], [True, False]
    )
    if not (own and (by_full != target_full or command == "disable"))
]


@pytest.mark.parametrize(("command", "by_full", "own", "target_full"), CASES)
def test_delegation_matrix(command: str, by_full: bool, own: bool, target_full: bool) -> None:
    target_id = "me" if own else "them"
    target = member(target_id, full_access=target_full)
    target.individual_rights.add("staff.view")  # something to revoke
    by = grantor("me", full_access=by_full)
    got = outcome(lambda: COMMANDS[command](target, by))
    assert got == expected(command, by_full, own, target_full)


# ---------------------------------------------------------------- single rules


def test_nobody_grants_a_right_they_do_not_hold_and_full_access_grants_anything() -> None:
    target = member("them")
    holder = grantor("me", full_access=False)
    with pytest.raises(Forbidden) as refused:
        target.grant("finance.payments", holder)
    assert refused.value.field == "right" and "finance.payments" in refused.value.message
    assert target.grant("staff.view", holder) != []  # held: may be handed on
    assert target.grant("finance.payments", grantor("me", full_access=True)) != []


def test_a_section_is_held_only_whole() -> None:
    """A department with clients on but clients.delete off does not give the clients section."""
    partial = Grantor(id="me", rights=effective({"clients"}, {"clients.delete"}))
    with pytest.raises(Forbidden):
        member("them").grant("clients", partial)
    assert member("them").grant("clients.view", partial) != []


def test_placing_someone_in_a_department_hands_over_its_rights() -> None:
    holder = grantor("me", full_access=False)
    with pytest.raises(Forbidden) as refused:
        Staff.add(
            "new",
            "newbie",
            LocalizedName(en="New"),
            None,
            None,
            [SUPPORT],
            KNOWN,
            department_rights=DEPARTMENT_RIGHTS,
            by=holder,
        )
    assert refused.value.code == "right_not_held" and refused.value.field == "departments"
    assert Staff.add(
        "new",
        "newbie",
        LocalizedName(en="New"),
        None,
        None,
        [BILLING],
        KNOWN,
        department_rights=DEPARTMENT_RIGHTS,
        by=holder,
    )
    with pytest.raises(Forbidden) as refused:
        Staff.add(
            "new",
            "newbie",
            LocalizedName(en="N"),
            None,
            None,
            [],
            KNOWN,
            full_access=True,
            by=holder,
        )
    assert refused.value.code == "full_access_required"


def test_taking_someone_out_of_a_department_needs_its_rights_too() -> None:
    target = member("them", departments=(SUPPORT, BILLING))
    holder = grantor("me", full_access=False)
    with pytest.raises(Forbidden):
        target.change(KNOWN, by=holder, department_rights=DEPARTMENT_RIGHTS, departments=[BILLING])
    assert target.change(
        KNOWN, by=holder, department_rights=DEPARTMENT_RIGHTS, departments=[SUPPORT]
    )


def test_own_account_fields_that_are_not_access_stay_editable() -> None:
    me = member("me")
    changed = me.change(KNOWN, by=grantor("me", full_access=False), phone="+7 900 000-00-01")
    assert changed and me.set_password(grantor("me", full_access=False))


def test_a_password_set_by_someone_else_names_them() -> None:
    [fact] = member("them").set_password(grantor("me", full_access=False))
    assert isinstance(fact, PasswordChanged) and fact.set_by == "me"


def test_a_client_or_an_impersonation_holds_nothing_to_hand_on() -> None:
    nobody = Grantor.of(None, "someone")
    assert not nobody.full_access and nobody.missing(["clients.view"]) == ["clients.view"]


def test_a_section_a_department_gives_is_inherited_like_its_functions() -> None:
    rights = {BILLING: effective({"clients"}, {"clients.delete"})}
    target = member("them", departments=(BILLING,))
    with pytest.raises(Conflict) as inherited:
        target.revoke("clients", rights, SYSTEM)
    assert inherited.value.code == "inherited_right"
    with pytest.raises(NotFound):
        target.revoke("finance", rights, SYSTEM)


def test_an_unknown_right_is_still_a_422() -> None:
    with pytest.raises(DomainError):
        member("them").grant("no.such", grantor("me", full_access=True))


# ---------------------------------------------------------------- departments


def department(department_id: str = BILLING) -> Department:
    return Department().applied(Department.create(department_id, LocalizedText(en="Billing")))


def test_a_department_gets_only_rights_its_grantor_holds() -> None:
    holder = grantor("me", full_access=False)
    billing = department()
    assert billing.set_right("clients.view", True, holder)
    with pytest.raises(Forbidden) as refused:
        billing.set_right("clients", True, holder)  # the whole section: clients.delete too
    assert refused.value.code == "right_not_held" and "clients.delete" in refused.value.message
    with pytest.raises(Forbidden):
        billing.set_right("tickets.all_departments", True, holder)
    assert billing.set_right("clients", True, grantor("me", full_access=True))


def test_turning_a_right_off_needs_it_as_well() -> None:
    billing = department()
    billing.applied(billing.set_right("finance", True))
    with pytest.raises(Forbidden):
        billing.set_right("finance.payments", False, grantor("me", full_access=False))


def test_nobody_changes_the_rights_of_their_own_department() -> None:
    member_of_billing = grantor("me", full_access=False, departments=frozenset({BILLING}))
    with pytest.raises(Forbidden) as refused:
        department().set_right("clients.view", True, member_of_billing)
    assert refused.value.code == "own_department"
    full = grantor("me", full_access=True, departments=frozenset({BILLING}))
    assert department().set_right("clients.view", True, full)


# ---------------------------------------------------------------- separate grants, defaults


def test_the_tickets_section_does_not_imply_every_departments_tickets() -> None:
    assert "tickets.all_departments" not in catalogue.expand(["tickets"])
    billing = department()
    billing.applied(billing.set_right("tickets", True))
    assert "tickets.view" in billing.rights() and "tickets.all_departments" not in billing.rights()
    billing.applied(billing.set_right("tickets.all_departments", True))
    assert {"tickets", "tickets.all_departments"} <= billing.rights()
    billing.applied(billing.set_right("tickets", False))
    assert not billing.rights()


def test_technical_support_works_its_own_queue_from_the_start() -> None:
    support = Department.rebuilt(TECHNICAL_SUPPORT.events())
    assert {"tickets.view", "tickets.reply", "tickets.close"} <= support.rights()
    assert "tickets.all_departments" not in support.rights()
    assert Department.rebuilt(SALES.events()).rights() == frozenset()


def test_full_access_still_means_every_right() -> None:
    boss = member("boss", full_access=True)
    assert set(boss.effective_rights({})) == set(catalogue.ALL_RIGHTS)


def test_names_longer_than_the_copies_keep_are_refused() -> None:
    with pytest.raises(DomainError) as refused:
        Staff.add("s", "longname", LocalizedName(en="x" * 201), None, None, [], KNOWN)
    assert refused.value.field == "full_name.en"
    with pytest.raises(DomainError) as refused:
        member("them").change(KNOWN, full_name=LocalizedName(en="ok", ru="я" * 201))
    assert refused.value.field == "full_name.ru"


# ---------------------------------------------------------------- the functions that manage rights

MANAGERS = ("staff.rights", "departments.rights")


def test_the_functions_that_manage_rights_are_full_access_only_and_never_implied() -> None:
    assert set(MANAGERS) == set(catalogue.FULL_ACCESS_ONLY) <= catalogue.SEPARATE_GRANTS
    assert not catalogue.expand(["staff", "departments"]) & catalogue.FULL_ACCESS_ONLY
    listed = {
        f["right"]: f["full_access_only"]
        for s in catalogue.catalogue_as_json()
        for f in s["functions"]
    }
    assert {r for r, only in listed.items() if only} == set(MANAGERS)


@pytest.mark.parametrize("right", MANAGERS)
@pytest.mark.parametrize("by", ["system", "full", "holder"])
def test_nobody_grants_a_function_that_manages_rights(right: str, by: str) -> None:
    grantors = {
        "system": SYSTEM,
        "full": grantor("me", full_access=True),
        "holder": Grantor(id="me", rights=frozenset(MANAGERS) | HOLDER_RIGHTS),
    }
    with pytest.raises(Forbidden) as refused:
        member("them").grant(right, grantors[by])
    assert refused.value.code == "full_access_only" and refused.value.field == "right"
    assert "give full access instead" in refused.value.message
    with pytest.raises(Forbidden) as refused:
        department().set_right(right, True, grantors[by])
    assert refused.value.code == "full_access_only" and refused.value.field == "right"


def test_a_grantor_without_full_access_never_holds_a_function_that_manages_rights() -> None:
    """An older copy may still list staff.rights: it hands on nothing through it."""
    fact = StaffAccessChanged(
        staff_id="me",
        login="me",
        disabled=False,
        full_access=False,
        rights=["staff.rights", "departments.rights", "clients.view"],
        departments=[],
        ip_policy=IpPolicy(),
        bind_session_to_ip=False,
    )
    access = access_from_event(fact)
    assert not access.has("staff.rights") and not access.has("departments.rights")
    assert access.has("clients.view")
    by = Grantor.of(access, "me")
    assert by.rights == frozenset({"clients.view"})
    # Nor counted as held when a Grantor is made by hand: revoking one needs full access.
    old = member("them")
    old.apply(RightGranted(staff_id="them", right="staff.rights"))
    by_hand = Grantor(id="me", rights=frozenset(MANAGERS))
    with pytest.raises(Forbidden) as refused:
        old.revoke("staff.rights", {}, by_hand)
    assert refused.value.code == "right_not_held"
    assert old.revoke("staff.rights", {}, grantor("me", full_access=True))
    full = access_from_event(fact.model_copy(update={"full_access": True}))
    assert full.has("staff.rights")


def test_an_older_grant_or_department_right_does_not_give_them() -> None:
    old = member("them", departments=(BILLING,))
    old.apply(RightGranted(staff_id="them", right="staff.rights"))
    old_department = {BILLING: frozenset({"departments.rights", "clients.view"})}
    rights = old.effective_rights(old_department)
    assert "clients.view" in rights and not set(rights) & catalogue.FULL_ACCESS_ONLY
    assert not set(old.access_fact(old_department).rights) & catalogue.FULL_ACCESS_ONLY
    boss = member("boss", full_access=True)
    assert set(MANAGERS) <= set(boss.effective_rights({}))


def test_a_department_never_gives_them_even_from_an_older_event() -> None:
    billing = department()
    billing.applied(billing.set_right("staff", True))
    billing.applied(billing.set_right("departments", True))
    assert {"staff.view", "departments.edit"} <= billing.rights()
    assert not billing.rights() & catalogue.FULL_ACCESS_ONLY
    billing.apply(DepartmentRightEnabled(department_id=BILLING, right="departments.rights"))
    assert not billing.rights() & catalogue.FULL_ACCESS_ONLY
    # An older one may still be turned off (it changes no effective right).
    assert billing.set_right("departments.rights", False, grantor("me", full_access=True))
