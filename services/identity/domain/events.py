"""Events of the identity context. None carries a password, a hash or a token.

Credentials live in identity's credential table, outside the event log; the
log records only that a password changed. The access facts other services read
(``StaffAccessChanged``, ``SessionEnded``) come from ``shared.access`` and are
registered here too, since identity writes them into its own streams.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, EmailStr

from shared import access
from shared.access import IpPolicy
from shared.events import DomainEvent, EventRegistry

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
    event_type = "SessionStarted"
    session_id: str
    principal_id: str
    kind: Literal["staff", "client"]
    ip: str | None
    bound_to_ip: bool
    impersonator_id: str | None = None
    expires_at: datetime


@registry.register
class LoginFailed(DomainEvent):
    """A security event: who tried, from where, why it failed. Never the password."""

    event_type = "LoginFailed"
    login: str
    ip: str | None
    reason: Literal["bad_credentials", "disabled", "ip_not_allowed", "group_denied", "locked_out"]
    failures_in_a_row: int


@registry.register
class LoginLockedOut(DomainEvent):
    event_type = "LoginLockedOut"
    login: str
    until: datetime


@registry.register
class LoginSucceeded(DomainEvent):
    event_type = "LoginSucceeded"
    login: str
    ip: str | None
    session_id: str
