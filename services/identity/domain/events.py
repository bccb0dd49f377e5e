"""Events of the identity context. None carries a password, a hash or a token.

Credentials live in identity's credential table, outside the event log; the
log records only that a password changed. The access facts other services read
(``StaffAccessChanged``, ``SessionEnded``) come from ``shared.access.control`` and are
registered here too, since identity writes them into its own streams.
Client principals (the credential side of the clients context's clients) live
in streams ``client-principal-<client id>`` and carry no personal data.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, EmailStr

from shared.access import control as access
from shared.access.control import IpPolicy
from shared.domain.events import DomainEvent, EventRegistry

registry = EventRegistry()
for model in (access.StaffAccessChanged, access.ClientAccessChanged, access.SessionEnded):
    registry.register(model)

UserGroup = Literal["staff", "admin", "client"]


class LocalizedName(BaseModel):
    en: str
    ru: str = ""


@registry.register
class StaffAdded(DomainEvent):
    event_type = "StaffAdded"
    staff_id: str
    login: str
    full_name: LocalizedName
    email: EmailStr | None
    phone: str | None
    departments: list[str]
    full_access: bool
    ip_policy: IpPolicy
    bind_session_to_ip: bool
    chat_enabled: bool
    group: UserGroup


@registry.register
class StaffChanged(DomainEvent):
    """Only the fields that changed are set; the others are None."""

    event_type = "StaffChanged"
    staff_id: str
    full_name: LocalizedName | None = None
    email: EmailStr | None = None
    phone: str | None = None
    departments: list[str] | None = None
    full_access: bool | None = None
    ip_policy: IpPolicy | None = None
    bind_session_to_ip: bool | None = None
    chat_enabled: bool | None = None
    group: UserGroup | None = None


@registry.register
class StaffDisabled(DomainEvent):
    event_type = "StaffDisabled"
    staff_id: str


@registry.register
class RightGranted(DomainEvent):
    event_type = "RightGranted"
    staff_id: str
    right: str


@registry.register
class RightRevoked(DomainEvent):
    event_type = "RightRevoked"
    staff_id: str
    right: str


@registry.register
class PasswordChanged(DomainEvent):
    """The fact only; the new hash is in the credential table."""

    event_type = "PasswordChanged"
    principal_id: str
    # Who set it: the principal themselves, or the staff member who set it for them.
    set_by: str | None = None


@registry.register
class AvatarChanged(DomainEvent):
    """The image itself is kept outside the event log, under its hash."""

    event_type = "AvatarChanged"
    staff_id: str
    sha256: str
    content_type: str
    size: int


@registry.register
class SessionStarted(DomainEvent):
    """A session began: by a login, or by a staff member impersonating a client."""

    event_type = "SessionStarted"
    session_id: str
    principal_id: str
    kind: Literal["staff", "client"]
    ip: str | None
    bound_to_ip: bool
    impersonator_id: str | None = None
    # The impersonating staff member's own session, so that ending it ends this one.
    impersonator_session_id: str | None = None
    expires_at: datetime


# The login guard's events name the login for staff only. A client's login is
# personal data, and so may be what was typed for an unknown login (a deleted
# client's, say): those events leave ``login`` empty, and a client's name its
# principal instead.


@registry.register
class LoginFailed(DomainEvent):
    """A security event: who tried, from where, why it failed. Never the password."""

    event_type = "LoginFailed"
    login: str
    ip: str | None
    reason: Literal[
        "bad_credentials",
        "disabled",
        "ip_not_allowed",
        "group_denied",
        "locked_out",
        "otp_required",
        "otp_invalid",
    ]
    failures_in_a_row: int
    principal_id: str | None = None


@registry.register
class LoginLockedOut(DomainEvent):
    """A login from one address (``scope`` "login"), or an address for every login, locked."""

    event_type = "LoginLockedOut"
    login: str
    until: datetime
    principal_id: str | None = None
    ip: str | None = None
    failures: int | None = None  # the failures that led to it
    scope: Literal["login", "address"] = "login"


@registry.register
class LoginSucceeded(DomainEvent):
    event_type = "LoginSucceeded"
    login: str
    ip: str | None
    session_id: str
    principal_id: str | None = None


# ---------------------------------------------------------------- client principals


@registry.register
class ClientPrincipalRegistered(DomainEvent):
    """The clients service handed over a new client's credential (the hash is not here)."""

    event_type = "ClientPrincipalRegistered"
    client_id: str


@registry.register
class ClientPrincipalRemoved(DomainEvent):
    """The client was erased: the credential is gone, the login free again."""

    event_type = "ClientPrincipalRemoved"
    client_id: str


# ---------------------------------------------------------------- self-service passwords


@registry.register
class PasswordResetRequested(DomainEvent):
    """A single-use link to set a new password was made (stream ``password-reset-<id>``).

    Never the token: the link's secret part is derived from ``reset_id`` with a
    key only identity holds, and reaches the principal only in the mail the
    notifier sends (it asks identity for the link when it sends).
    """

    event_type = "PasswordResetRequested"
    reset_id: str
    principal_id: str
    kind: Literal["staff", "client"]
    expires_at: datetime


@registry.register
class PasswordResetUsed(DomainEvent):
    """The link set a new password; it works no more (``PasswordChanged`` follows)."""

    event_type = "PasswordResetUsed"
    reset_id: str
    principal_id: str


# ---------------------------------------------------------------- second factor (TOTP)


@registry.register
class SecondFactorEnrolled(DomainEvent):
    """A staff member asked for a TOTP secret; it counts once confirmed with a code.

    ``secret`` is sealed with the member's key (``shared.privacy.shredding``):
    never in clear in the store or on the topic.
    """

    event_type = "SecondFactorEnrolled"
    personal_fields: ClassVar[tuple[str, ...]] = ("secret",)
    subject_field: ClassVar[str] = "staff_id"
    staff_id: str
    secret: str | None


@registry.register
class SecondFactorEnabled(DomainEvent):
    """Confirmed with a code: logins need one from now on. Recovery codes are hashed
    in identity's table, never in an event."""

    event_type = "SecondFactorEnabled"
    staff_id: str
    recovery_codes: int


@registry.register
class SecondFactorDisabled(DomainEvent):
    event_type = "SecondFactorDisabled"
    staff_id: str
    by: str


@registry.register
class RecoveryCodeUsed(DomainEvent):
    """A recovery code replaced a TOTP code at login (each works once)."""

    event_type = "RecoveryCodeUsed"
    staff_id: str
    left: int
