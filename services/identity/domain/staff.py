"""The staff member: account data, individual rights, and how effective rights are made.

Rules (DESIGN §1, §6):
* rights of a member's departments are inherited and cannot be removed from
  the member individually (409 ``inherited_right``); extra rights can be
  granted to one member;
* a member of several departments gets the union; full access means every right;
* each effective right knows its sources;
* delegation (``shared.access.delegation``): every command names its grantor (``by``),
  who hands over only rights they hold (a grant, a revocation, a place in a
  department), never changes their own rights, departments or full access,
  and touches a full-access member only with full access themselves; a
  section a department gives (even in part) is inherited like its functions;
* the functions that manage rights (``staff.rights``, ``departments.rights``)
  are never granted (403 ``full_access_only``) and never in the effective
  rights of a member without full access, even when an older grant or a
  department's older right still names one (``catalogue.usable``); revoking
  such an old grant stays possible, for full-access staff.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.identity.domain.events import (
    AvatarChanged,
    LocalizedName,
    PasswordChanged,
    RightGranted,
    RightRevoked,
    SecondFactorDisabled,
    SecondFactorEnabled,
    SecondFactorEnrolled,
    StaffAdded,
    StaffChanged,
    StaffDisabled,
    UserGroup,
)
from shared.access.control import IpPolicy, StaffAccessChanged
from shared.access.delegation import SYSTEM, Grantor
from shared.domain import rights as catalogue
from shared.domain.aggregate import Aggregate, Conflict, DomainError, NotFound
from shared.domain.events import DomainEvent

# Every copy of staff names (tickets, clients, notifier) keeps them in 200-character
# columns: a longer name would fail their inserts and hold their consumers back.
MAX_NAME = 200
MAX_EMAIL = 254
LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")
PHONE = re.compile(r"^\+?[0-9 ()-]{5,32}$")
FULL_ACCESS = "full_access"
INDIVIDUAL = "individual"


def department_source(department_id: str) -> str:
    return f"department:{department_id}"


def check_login(login: str) -> None:
    if not LOGIN.match(login):
        raise DomainError(
            "login", "2-64 characters: Latin letters, digits and . _ @ -, starting alphanumeric"
        )


def check_name(name: LocalizedName) -> None:
    if not name.en.strip():
        raise DomainError("full_name.en", "a name is required")
    for language, text in (("en", name.en), ("ru", name.ru)):
        if len(text) > MAX_NAME:
            raise DomainError(f"full_name.{language}", f"at most {MAX_NAME} characters")


def check_email(email: str | None) -> None:
    if email is not None and len(email) > MAX_EMAIL:
        raise DomainError("email", f"at most {MAX_EMAIL} characters")


def check_phone(phone: str | None) -> None:
    if phone is not None and not PHONE.match(phone):
        raise DomainError("phone", "digits, spaces, parentheses, dashes and an optional +")


def check_ip_policy(policy: IpPolicy) -> None:
    if policy.mode == "list" and not policy.allowed:
        raise DomainError("ip_policy.allowed", "a list policy needs at least one address or CIDR")
    for i, address in enumerate(policy.allowed):
        try:
            IpPolicy(mode="list", allowed=[address]).networks()
        except ValueError:
            raise DomainError(
                f"ip_policy.allowed.{i}", f"{address!r} is not an IP address or CIDR"
            ) from None


class Staff(Aggregate):
    """A staff account, rebuilt from its stream ``staff-<id>``."""

    handles = frozenset(
        {
            StaffAdded.event_type,
            StaffChanged.event_type,
            StaffDisabled.event_type,
            RightGranted.event_type,
            RightRevoked.event_type,
            AvatarChanged.event_type,
            SecondFactorEnrolled.event_type,
            SecondFactorEnabled.event_type,
            SecondFactorDisabled.event_type,
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self.id = ""
        self.login = ""
        self.full_name = LocalizedName(en="")
        self.email: str | None = None
        self.phone: str | None = None
        self.departments: list[str] = []
        self.full_access = False
        self.ip_policy = IpPolicy()
        self.bind_session_to_ip = False
        self.chat_enabled = False
        self.group: UserGroup = "staff"
        self.disabled = False
        self.individual_rights: set[str] = set()
        self.avatar_sha256: str | None = None
        # TOTP: enrolled (a secret handed out, not yet confirmed) and on (logins need a code).
        self.second_factor_enrolled = False
        self.second_factor = False

    @property
    def exists(self) -> bool:
        return bool(self.id)

    # ------------------------------------------------------------ commands

    @staticmethod
    def add(
        staff_id: str,
        login: str,
        full_name: LocalizedName,
        email: str | None,
        phone: str | None,
        departments: list[str],
        known_departments: set[str],
        full_access: bool = False,
        ip_policy: IpPolicy | None = None,
        bind_session_to_ip: bool = False,
        chat_enabled: bool = False,
        group: UserGroup = "staff",
        *,
        department_rights: Mapping[str, frozenset[str]] | None = None,
        by: Grantor = SYSTEM,
    ) -> list[DomainEvent]:
        check_login(login)
        check_name(full_name)
        check_email(email)
        check_phone(phone)
        _check_departments(departments, known_departments)
        if full_access:
            by.may_give_full_access()
        _check_placing(by, departments, department_rights or {})
        policy = ip_policy or IpPolicy()
        check_ip_policy(policy)
        return [
            StaffAdded(
                staff_id=staff_id,
                login=login,
                full_name=full_name,
                email=email,
                phone=phone,
                departments=list(dict.fromkeys(departments)),
                full_access=full_access,
                ip_policy=policy,
                bind_session_to_ip=bind_session_to_ip,
                chat_enabled=chat_enabled,
                group=group,
            )
        ]

    def change(
        self,
        known_departments: set[str],
        *,
        by: Grantor = SYSTEM,
        department_rights: Mapping[str, frozenset[str]] | None = None,
        **changes: Any,
    ) -> list[DomainEvent]:
        """Change account fields; unchanged values produce no event."""
        self._require_active()
        by.may_change_member(self.full_access)
        if "phone" in changes:
            check_phone(changes["phone"])
        if "departments" in changes:
            _check_departments(changes["departments"], known_departments)
            changes["departments"] = list(dict.fromkeys(changes["departments"]))
        if "ip_policy" in changes:
            check_ip_policy(changes["ip_policy"])
        if "full_name" in changes:
            check_name(changes["full_name"])
        if "email" in changes:
            check_email(changes["email"])
        different = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if "full_access" in different:
            by.must_not_be(self.id, "full_access", "full access")
            by.may_give_full_access()
        if "departments" in different:
            by.must_not_be(self.id, "departments", "departments")
            moved = set(different["departments"]) ^ set(self.departments)
            _check_placing(
                by,
                [d for d in different["departments"] + self.departments if d in moved],
                department_rights or {},
            )
        return [StaffChanged(staff_id=self.id, **different)] if different else []

    def set_password(self, by: Grantor = SYSTEM) -> list[DomainEvent]:
        """The fact of a new password (the hash is the credential store's), naming who set it."""
        self._require_active()
        if by.id != self.id:
            by.may_change_member(self.full_access, "password")
        return [PasswordChanged(principal_id=self.id, set_by=by.id)]

    def enroll_second_factor(self, secret: str) -> list[DomainEvent]:
        """A new TOTP secret for the member themselves; one that is on stays on until
        turned off (a second enrolment would let a stolen session replace it)."""
        self._require_active()
        if self.second_factor:
            raise Conflict("second_factor_on", "the second factor is on; turn it off first")
        return [SecondFactorEnrolled(staff_id=self.id, secret=secret)]

    def enable_second_factor(self, recovery_codes: int) -> list[DomainEvent]:
        """Confirmed with a right code (checked by the caller, who holds the secret)."""
        self._require_active()
        if self.second_factor:
            return []
        if not self.second_factor_enrolled:
            raise Conflict("second_factor_not_enrolled", "ask for a secret first (POST /me/2fa)")
        return [SecondFactorEnabled(staff_id=self.id, recovery_codes=recovery_codes)]

    def disable_second_factor(self, by: str) -> list[DomainEvent]:
        self._require_exists()
        if not self.second_factor and not self.second_factor_enrolled:
            return []
        return [SecondFactorDisabled(staff_id=self.id, by=by)]

    def change_avatar(
        self, sha256: str, content_type: str, size: int, by: Grantor = SYSTEM
    ) -> list[DomainEvent]:
        self._require_active()
        if by.id != self.id:
            by.may_change_member(self.full_access, "avatar")
        if sha256 == self.avatar_sha256:
            return []
        return [
            AvatarChanged(staff_id=self.id, sha256=sha256, content_type=content_type, size=size)
        ]

    def disable(self, by: Grantor = SYSTEM) -> list[DomainEvent]:
        self._require_exists()
        by.may_change_member(self.full_access)
        return [] if self.disabled else [StaffDisabled(staff_id=self.id)]

    def grant(self, right: str, by: Grantor = SYSTEM) -> list[DomainEvent]:
        self._require_active()
        if not catalogue.is_known(right):
            raise DomainError("right", f"{right!r} is not in the rights catalogue")
        by.may_hand_on([right], "right")
        self._may_manage_rights(right, by, f"granting {right!r}")
        if right in self.individual_rights:
            return []
        return [RightGranted(staff_id=self.id, right=right)]

    def revoke(
        self,
        right: str,
        department_rights: Mapping[str, frozenset[str]],
        by: Grantor = SYSTEM,
    ) -> list[DomainEvent]:
        """Remove an individual grant; a right that only departments give cannot be removed.

        A section counts as inherited when a department gives any of its
        functions: the department enabled it, with or without exceptions.
        """
        self._require_active()
        if catalogue.is_known(right):
            self._may_manage_rights(right, by, f"revoking {right!r}")
        if right in self.individual_rights:
            return [RightRevoked(staff_id=self.id, right=right)]
        given = catalogue.expand([right]) or frozenset({right})
        inherited = [d for d in self.departments if given & department_rights.get(d, frozenset())]
        if inherited:
            raise Conflict(
                "inherited_right",
                f"{right!r} comes from department(s) {', '.join(inherited)}; "
                "change the department's rights instead",
            )
        raise NotFound(f"individual right {right!r} of staff {self.id}")

    def _may_manage_rights(self, right: str, by: Grantor, what: str) -> None:
        by.must_not_be(self.id, "right", "rights")
        by.may_change_member(self.full_access, "right")
        by.must_hold([right], "right", what)

    # ------------------------------------------------------------ state

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, StaffAdded):
            self.id = event.staff_id
            self.login = event.login
            self.full_name = event.full_name
            self.email = event.email
            self.phone = event.phone
            self.departments = list(event.departments)
            self.full_access = event.full_access
            self.ip_policy = event.ip_policy
            self.bind_session_to_ip = event.bind_session_to_ip
            self.chat_enabled = event.chat_enabled
            self.group = event.group
        elif isinstance(event, StaffChanged):
            for name, value in event.model_dump(exclude_none=True, exclude={"staff_id"}).items():
                setattr(self, name, getattr(event, name) if isinstance(value, dict) else value)
        elif isinstance(event, StaffDisabled):
            self.disabled = True
        elif isinstance(event, RightGranted):
            self.individual_rights.add(event.right)
        elif isinstance(event, RightRevoked):
            self.individual_rights.discard(event.right)
        elif isinstance(event, AvatarChanged):
            self.avatar_sha256 = event.sha256
        elif isinstance(event, SecondFactorEnrolled):
            self.second_factor_enrolled = True
        elif isinstance(event, SecondFactorEnabled):
            self.second_factor = True
        elif isinstance(event, SecondFactorDisabled):
            self.second_factor = self.second_factor_enrolled = False

    def _require_exists(self) -> None:
        if not self.exists:
            raise NotFound("staff member")

    def _require_active(self) -> None:
        self._require_exists()
        if self.disabled:
            raise Conflict("staff_disabled", f"staff member {self.id} is disabled")

    # ------------------------------------------------------------ effective access

    def effective_rights(
        self, department_rights: Mapping[str, frozenset[str]]
    ) -> dict[str, list[str]]:
        """Every effective right with its sources, sorted for stable comparison."""
        sources: dict[str, list[str]] = {}

        def add(right: str, source: str) -> None:
            sources.setdefault(right, []).append(source)

        if self.full_access:
            for right in catalogue.ALL_RIGHTS:
                add(right, FULL_ACCESS)
        for department in self.departments:
            source = department_source(department)
            for right in department_rights.get(department, frozenset()):
                add(right, source)
        for right in catalogue.expand(self.individual_rights):
            add(right, INDIVIDUAL)
        if not self.full_access:
            # An older grant or department right may name a function that manages
            # rights: without full access it is never effective (catalogue.usable).
            for right in catalogue.FULL_ACCESS_ONLY:
                sources.pop(right, None)
        # Most rights have one source: only several need de-duplicating and sorting
        # (this runs for every member whenever a department's rights change).
        return {
            right: found if len(found) == 1 else sorted(set(found))
            for right, found in sorted(sources.items())
        }

    def access_fact(self, department_rights: Mapping[str, frozenset[str]]) -> StaffAccessChanged:
        """What every service needs to authorise this member, now."""
        effective = self.effective_rights(department_rights)
        return StaffAccessChanged(
            staff_id=self.id,
            login=self.login,
            disabled=self.disabled,
            full_access=self.full_access,
            rights=list(effective),
            departments=list(self.departments),
            ip_policy=self.ip_policy,
            bind_session_to_ip=self.bind_session_to_ip,
            sources=effective,
        )


def _check_placing(
    by: Grantor, departments: list[str], department_rights: Mapping[str, frozenset[str]]
) -> None:
    """Placing someone in a department (or taking them out) hands over its rights."""
    for department in departments:
        by.must_hold(
            department_rights.get(department, frozenset()),
            "departments",
            f"a place in department {department}",
        )


def _check_departments(departments: list[str], known: set[str]) -> None:
    for i, department in enumerate(departments):
        if department not in known:
            raise DomainError(f"departments.{i}", f"no department {department!r}")
