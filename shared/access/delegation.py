"""Delegation: who may hand which rights to whom (DESIGN §6, issue 17).

The rules identity's and departments' deciders keep, as pure functions of the
grantor (the staff member acting, with the access they hold now) and the
target. Rights travel three ways: an individual grant, a department's rights,
and a place in a department. On every way:

* a grantor hands over only what they hold: granting or revoking a right,
  turning a department's right on or off, placing someone in a department or
  taking them out needs every right that changes hands (a section counts as
  all the functions it gives);
* nobody changes their own rights, departments or full access, nor the rights
  of a department they belong to (full-access staff gain nothing there);
* only full-access staff give full access, and only they change a full-access
  member at all (password, IP policy, departments, disabling, rights);
* the functions that manage rights (``shared.domain.rights.FULL_ACCESS_ONLY``:
  ``staff.rights``, ``departments.rights``) are held and used by full-access
  staff only: granting one to anyone, or turning one on for a department, is
  refused (``full_access_only``: give full access instead), and a grantor
  without full access never counts as holding one, even if an older grant
  still lists it. Whoever holds them can hand on any right, so holding them is
  full access in all but name.

A breach is ``Forbidden`` (403) naming what was asked and why; the grantor's
right to call the route at all (``staff.rights``...) is the route's own check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.access import Access
from shared.domain import Forbidden
from shared.domain import rights as catalogue


@dataclass(frozen=True, slots=True)
class Grantor:
    """The staff member who acts, with what they hold at the moment of the command."""

    id: str
    full_access: bool = False
    rights: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()

    @classmethod
    def of(cls, access: Access | None, actor_id: str) -> Grantor:
        """From a principal's access copy; a client (or none) holds nothing to hand on."""
        if access is None or access.kind != "staff" or access.disabled:
            return cls(id=actor_id)
        return cls(
            id=actor_id,
            full_access=access.full_access,
            rights=frozenset(access.rights),
            departments=frozenset(access.departments),
        )

    def missing(self, rights: Iterable[str]) -> list[str]:
        """Of ``rights`` (sections counted as what they give), those this grantor lacks."""
        if self.full_access:
            return []
        # usable(): a Grantor made by hand (or from an older copy) may still list a
        # function that manages rights; without full access it is never held.
        return sorted(catalogue.expand(rights) - catalogue.usable(self.rights, False))

    def must_hold(self, rights: Iterable[str], field: str, what: str) -> None:
        """403 ``right_not_held`` unless the grantor holds every one of ``rights``."""
        missing = self.missing(list(rights))
        if missing:
            raise Forbidden(
                "right_not_held",
                f"{what} needs rights you do not hold: {', '.join(missing)}",
                field,
            )

    def may_hand_on(self, rights: Iterable[str], field: str) -> None:
        """403 ``full_access_only``: a function that manages rights is never handed on.

        Asked of every grant and of every right turned on for a department, by
        anyone (the system and full-access staff too): the only way to hold one
        is full access.
        """
        named = sorted(catalogue.FULL_ACCESS_ONLY.intersection(rights))
        if named:
            raise Forbidden(
                "full_access_only",
                f"{', '.join(named)} is held by full-access staff only: give full access instead",
                field,
            )

    def must_not_be(self, target_id: str, field: str, what: str) -> None:
        """403 ``own_access``: nobody changes their own rights, departments or full access."""
        if target_id == self.id:
            raise Forbidden("own_access", f"nobody may change their own {what}", field)

    def may_change_member(self, target_full_access: bool, field: str | None = None) -> None:
        """403 ``full_access_member``: only full-access staff touch a full-access member."""
        if target_full_access and not self.full_access:
            raise Forbidden(
                "full_access_member",
                "only full-access staff may change a full-access member",
                field,
            )

    def may_give_full_access(self, field: str = "full_access") -> None:
        if not self.full_access:
            raise Forbidden(
                "full_access_required", "only full-access staff may give full access", field
            )


# Commands of the system itself (first start, defaults, replays of decisions).
SYSTEM = Grantor(id="system", full_access=True)
