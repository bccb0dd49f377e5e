"""The department: its data in the support center and the rights its members inherit.

Rights rule (DESIGN §1, §6). A department keeps two sets:

* ``enabled`` – sections and functions turned on;
* ``disabled`` – functions turned off *inside an enabled section*.

Its effective rights are ``expand(enabled) - disabled``, without the name of
any section that has a function turned off: a section name in the effective
set always means the whole section. So ``clients`` on and ``clients.delete``
off gives every ``clients.*`` right but ``clients.delete``, and not ``clients``.

Turning rights on and off (``set_right``):

* a section on: the whole section, forgetting earlier exceptions in it;
* a section off: nothing of the section, also functions turned on one by one;
* a function on: removed from ``disabled`` if its section is on, else added
  to ``enabled``;
* a function off: added to ``disabled`` if its section is on, else removed
  from ``enabled``; turning off the last function of an enabled section turns
  the section off.

A separate grant (``shared.domain.rights.SEPARATE_GRANTS``: ``tickets.all_departments``)
is never implied by its section: it is on only when turned on by name, and
it goes when it or its section is turned off.

The functions that manage rights (``shared.domain.rights.FULL_ACCESS_ONLY``:
``staff.rights``, ``departments.rights``) are held by full-access staff only:
turning one on is refused for everyone (403 ``full_access_only``), and one an
older event turned on is never in the effective rights (it may still be
turned off, which changes no effective right).

Delegation (``shared.access.delegation``): turning a right on or off hands over (or
takes away) every effective right that changes, and the grantor must hold
each; staff without full access never change the rights of a department
they belong to (that would change their own).

The state is kept canonical (no function listed both on its own and through
its section), so a command changes the state exactly when it changes the
effective rights, and a command that changes nothing writes no event. A new
department has no rights. Every rights change and the deletion also write
``DepartmentRightsChanged`` with the effective rights, for identity.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Self

from pydantic import BaseModel, ConfigDict

from services.departments.domain.errors import DomainError, Forbidden, NotFound
from services.departments.domain.events import (
    DepartmentChanged,
    DepartmentCreated,
    DepartmentDeleted,
    DepartmentField,
    DepartmentRightDisabled,
    DepartmentRightEnabled,
    LocalizedText,
    Support,
)
from shared.access.control import DepartmentRightsChanged
from shared.access.delegation import SYSTEM, Grantor
from shared.domain import rights as catalogue
from shared.domain.aggregate import Aggregate
from shared.domain.events import DomainEvent

LANGUAGES = ("en", "ru")
MAX_ID = 64  # read models key principals and departments with String(64)
MAX_NAME = 100
MAX_DESCRIPTION = 4000
MAX_SORT = 1_000_000


def stream_name(department_id: str) -> str:
    return f"department-{department_id}"


# ---------------------------------------------------------------- the rights rule


def turn(
    enabled: frozenset[str], disabled: frozenset[str], right: str, on: bool
) -> tuple[frozenset[str], frozenset[str]]:
    """The (enabled, disabled) sets after turning ``right`` on or off.

    A right unknown to the catalogue (one that has left it since an old event)
    changes nothing.
    """
    if not catalogue.is_known(right):
        return enabled, disabled
    section = catalogue.section_of(right)
    in_section = catalogue.SECTIONS[section].rights
    if right in catalogue.SEPARATE_GRANTS:
        return (enabled | {right} if on else enabled - {right}), disabled
    if catalogue.is_section(right):
        if on:
            return (enabled - in_section) | {section}, disabled - in_section
        return enabled - catalogue.SECTIONS[section].all_rights, disabled - in_section
    if section in enabled:
        if on:
            return enabled, disabled - {right}
        now_disabled = disabled | {right}
        if now_disabled >= in_section - {section}:
            return enabled - {section}, disabled - in_section  # nothing of it is left on
        return enabled, now_disabled
    return (enabled | {right} if on else enabled - {right}), disabled


def effective(enabled: Iterable[str], disabled: Collection[str]) -> frozenset[str]:
    """Effective rights of ``enabled`` minus ``disabled`` (see the module docstring)."""
    partial = {catalogue.section_of(right) for right in disabled}
    # A department never gives a function that manages rights (an older event may
    # have turned one on): members without full access must not hold it.
    return catalogue.expand(enabled) - frozenset(disabled) - partial - catalogue.FULL_ACCESS_ONLY


# ---------------------------------------------------------------- commands


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SupportPatch(_Command):
    """A partial change of the support block: only the fields given are changed."""

    enabled: bool | None = None
    providers: list[str] | None = None
    head_id: str | None = None  # given as null: the department has no head any more
    description: str | None = None
    sort: int | None = None
    charge_requests: bool | None = None
    inbound_email: str | None = None  # given as null: the department takes no mail


class DepartmentPatch(_Command):
    """``PATCH /departments/{id}``: only the fields given (``model_fields_set``) change.

    ``schedule_id`` given as null detaches the schedule; ``name`` and
    ``support`` cannot be null.
    """

    name: LocalizedText | None = None
    schedule_id: str | None = None
    task_language: str | None = None
    support: SupportPatch | None = None


# ---------------------------------------------------------------- validation


MAX_EMAIL = 254
_EMAIL = re.compile(r"[^@\s<>(),;:\"\[\]]+@[a-z0-9-]+(\.[a-z0-9-]+)+")


def _check_name(name: LocalizedText) -> LocalizedText:
    clean = LocalizedText(en=name.en.strip(), ru=name.ru.strip())
    if not clean.en:
        raise DomainError("name.en", "a name is required")
    for language, text in (("en", clean.en), ("ru", clean.ru)):
        if len(text) > MAX_NAME:
            raise DomainError(f"name.{language}", f"at most {MAX_NAME} characters")
    return clean


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise DomainError("task_language", f"one of {', '.join(LANGUAGES)}")
    return language


def _check_schedule(schedule_id: str | None, known_schedules: Collection[str]) -> None:
    if schedule_id is not None and schedule_id not in known_schedules:
        raise DomainError("schedule_id", f"no schedule {schedule_id!r}")


def _check_support(support: Support) -> Support:
    providers: list[str] = []
    for i, provider in enumerate(support.providers):
        if not provider.strip() or len(provider) > MAX_ID:
            raise DomainError(f"support.providers.{i}", f"a provider id of 1-{MAX_ID} characters")
        if provider not in providers:
            providers.append(provider)
    if support.head_id is not None and not (0 < len(support.head_id.strip()) <= MAX_ID):
        raise DomainError("support.head_id", f"a staff id of 1-{MAX_ID} characters, or null")
    if len(support.description) > MAX_DESCRIPTION:
        raise DomainError("support.description", f"at most {MAX_DESCRIPTION} characters")
    if not -MAX_SORT <= support.sort <= MAX_SORT:
        raise DomainError("support.sort", f"between {-MAX_SORT} and {MAX_SORT}")
    inbound = support.inbound_email
    if inbound is not None:
        inbound = inbound.strip().lower()
        if len(inbound) > MAX_EMAIL or not _EMAIL.fullmatch(inbound):
            raise DomainError("support.inbound_email", "an e-mail address, or null")
    return support.model_copy(update={"providers": providers, "inbound_email": inbound})


def _patched_support(current: Support, patch: SupportPatch) -> Support:
    given = patch.model_fields_set
    for name in ("enabled", "providers", "description", "sort", "charge_requests"):
        if name in given and getattr(patch, name) is None:
            raise DomainError(f"support.{name}", "cannot be null")
    update = {name: getattr(patch, name) for name in given}
    return Support.model_validate({**current.model_dump(), **update})


# ---------------------------------------------------------------- the aggregate


class Department(Aggregate):
    """A department, rebuilt from its stream ``department-<id>``."""

    def __init__(self) -> None:
        super().__init__()
        self.id = ""
        self.name = LocalizedText(en="")
        self.schedule_id: str | None = None
        self.task_language = "en"
        self.support = Support()
        self.deleted = False
        self.enabled: frozenset[str] = frozenset()
        self.disabled: frozenset[str] = frozenset()

    @property
    def exists(self) -> bool:
        return bool(self.id) and not self.deleted

    def rights(self) -> frozenset[str]:
        """The effective rights every member inherits."""
        return effective(self.enabled, self.disabled)

    # ------------------------------------------------------------ commands

    @staticmethod
    def create(
        department_id: str,
        name: LocalizedText,
        *,
        schedule_id: str | None = None,
        task_language: str = "en",
        support: Support | None = None,
        known_schedules: Collection[str] = frozenset(),
    ) -> list[DomainEvent]:
        """A new department, with no rights. ``known_schedules``: ids a ``schedule_id`` may name."""
        if not (0 < len(department_id.strip()) <= MAX_ID):
            raise DomainError("department_id", f"1-{MAX_ID} characters")
        clean_name = _check_name(name)
        _check_language(task_language)
        _check_schedule(schedule_id, known_schedules)
        return [
            DepartmentCreated(
                department_id=department_id,
                name=clean_name,
                schedule_id=schedule_id,
                task_language=task_language,
                support=_check_support(support or Support()),
            )
        ]

    def change(
        self, patch: DepartmentPatch, known_schedules: Collection[str] = frozenset()
    ) -> list[DomainEvent]:
        """Change the fields given in ``patch``; values equal to the current ones write nothing."""
        self._require_exists()
        given = patch.model_fields_set
        changed: list[DepartmentField] = []
        name = self.name
        if "name" in given:
            if patch.name is None:
                raise DomainError("name", "cannot be null")
            name = _check_name(patch.name)
            if name != self.name:
                changed.append("name")
        if "schedule_id" in given and patch.schedule_id != self.schedule_id:
            _check_schedule(patch.schedule_id, known_schedules)
            changed.append("schedule_id")
        language = self.task_language
        if "task_language" in given:
            if patch.task_language is None:
                raise DomainError("task_language", "cannot be null")
            language = _check_language(patch.task_language)
            if language != self.task_language:
                changed.append("task_language")
        support = self.support
        if "support" in given:
            if patch.support is None:
                raise DomainError("support", "cannot be null")
            support = _check_support(_patched_support(self.support, patch.support))
            if support != self.support:
                changed.append("support")
        if not changed:
            return []
        return [
            DepartmentChanged(
                department_id=self.id,
                changed=changed,
                name=name if "name" in changed else None,
                schedule_id=patch.schedule_id if "schedule_id" in changed else None,
                task_language=language if "task_language" in changed else None,
                support=support if "support" in changed else None,
            )
        ]

    def delete(self) -> list[DomainEvent]:
        """Delete the department; its members lose the rights it gave them."""
        self._require_exists()
        return [
            DepartmentDeleted(department_id=self.id),
            DepartmentRightsChanged(department_id=self.id, rights=[], deleted=True),
        ]

    def set_right(self, right: str, enabled: bool, by: Grantor = SYSTEM) -> list[DomainEvent]:
        """Turn a section or a function on or off; no events when nothing would change."""
        self._require_exists()
        if not catalogue.is_known(right):
            raise DomainError("right", f"{right!r} is not in the rights catalogue")
        if enabled:
            by.may_hand_on([right], "right")
        if not by.full_access and self.id in by.departments:
            raise Forbidden(
                "own_department",
                "nobody may change the rights of a department they belong to",
                "right",
            )
        after = turn(self.enabled, self.disabled, right, enabled)
        if after == (self.enabled, self.disabled):
            return []
        changing = self.rights() ^ effective(*after)
        by.must_hold(changing, "right", f"turning {right!r} {'on' if enabled else 'off'}")
        fact: DomainEvent = (
            DepartmentRightEnabled(department_id=self.id, right=right)
            if enabled
            else DepartmentRightDisabled(department_id=self.id, right=right)
        )
        return [
            fact,
            DepartmentRightsChanged(department_id=self.id, rights=sorted(effective(*after))),
        ]

    # ------------------------------------------------------------ state

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, DepartmentCreated):
            self.id = event.department_id
            self.name = event.name
            self.schedule_id = event.schedule_id
            self.task_language = event.task_language
            self.support = event.support
        elif isinstance(event, DepartmentChanged):
            for name in event.changed:
                setattr(self, name, getattr(event, name))
        elif isinstance(event, DepartmentDeleted):
            self.deleted = True
        elif isinstance(event, DepartmentRightEnabled):
            self.enabled, self.disabled = turn(self.enabled, self.disabled, event.right, True)
        elif isinstance(event, DepartmentRightDisabled):
            self.enabled, self.disabled = turn(self.enabled, self.disabled, event.right, False)
        # DepartmentRightsChanged is derived from the two above: nothing to apply.

    @classmethod
    def rebuilt(cls, events: Iterable[DomainEvent]) -> Self:
        return cls().applied(events)

    def _require_exists(self) -> None:
        if not self.id:
            raise NotFound("department")
        if self.deleted:
            raise NotFound(f"department {self.id} (deleted)")
