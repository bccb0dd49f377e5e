"""The client: the card staff keep about a customer, their messages and their standing.

The aggregate takes commands and returns events; it never does I/O. What it
must know of other aggregates (which projects, groups and clients exist) the
application layer looks up and passes in as ``References``.

Rules:

* login: 3–64 characters, Latin letters, digits and ``. _ - @ +``;
  password: 8–256 characters of printable ASCII with at least one Latin letter
  and one digit (the "Latin letters and digits" rule);
* a company needs a company name; country is an ISO 3166-1 alpha-2 code,
  language an ISO 639-1 code;
* an abuse notice adds its penalty points when sent, and when the notifier
  reports its deadline passed the action is taken once (``notice_expired``);
* an erased client takes no further command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Self

import pycountry
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict

from services.clients.domain.events import (
    AbuseNoticeExpired,
    Attachment,
    Characteristic,
    ClientChanged,
    ClientErased,
    ClientField,
    ClientImpersonated,
    ClientMessaged,
    ClientPasswordReset,
    ClientRegistered,
    ClientServicesResumed,
    ClientServicesSuspended,
    CustomerStatus,
    PenaltyPointsAdded,
    Violation,
)
from shared.domain.aggregate import Aggregate, Conflict, DomainError, NotFound
from shared.domain.events import DomainEvent

LOGIN = re.compile(r"^[A-Za-z0-9._@+-]{3,64}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 256
MAX_TEXT = 200
MAX_NOTE = 4000
MAX_LIST = 50
MAX_PENALTY = 1000


def stream_name(client_id: str) -> str:
    return f"client-{client_id}"


# ---------------------------------------------------------------- field rules


def check_login(login: str) -> str:
    if not LOGIN.match(login):
        raise DomainError("login", "3 to 64 Latin letters, digits or . _ - @ +")
    return login


def check_password(password: str, field_name: str = "password") -> None:
    """The "Latin letters and digits" rule; the message never repeats the password."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise DomainError(field_name, f"{MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if not all(" " < ch <= "~" for ch in password):
        raise DomainError(field_name, "only Latin letters, digits and ASCII punctuation")
    if not any(ch.isascii() and ch.isalpha() for ch in password) or not any(
        ch.isdigit() for ch in password
    ):
        raise DomainError(field_name, "needs at least one Latin letter and one digit")


def check_email(email: str) -> str:
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise DomainError("email", str(error)) from None


def check_country(country: str) -> str:
    code = country.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise DomainError("country", f"{country!r} is not an ISO 3166-1 alpha-2 country code")
    return code


def check_language(language: str) -> str:
    code = language.strip().lower()
    if len(code) != 2 or pycountry.languages.get(alpha_2=code) is None:
        raise DomainError("language", f"{language!r} is not an ISO 639-1 language code")
    return code


def _text(value: str | None, field_name: str, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    clean = value.strip()
    if len(clean) > limit:
        raise DomainError(field_name, f"at most {limit} characters")
    return clean or None


def _unique(values: list[str], field_name: str) -> list[str]:
    if len(values) > MAX_LIST:
        raise DomainError(field_name, f"at most {MAX_LIST} entries")
    return sorted(set(values))


# ---------------------------------------------------------------- commands


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClientCard(_Command):
    """Everything staff may set on a client card (``POST /clients`` minus the password)."""

    login: str
    email: str
    country: str
    customer_status: CustomerStatus
    company_name: str | None = None
    contact_person: str | None = None
    project_id: str | None = None
    language: str = "en"
    phone: str | None = None
    phone_verified: bool = False
    note: str | None = None
    referral_source: str | None = None
    characteristic: Characteristic = "normal"
    referrer_id: str | None = None
    partner_program: str | None = None
    groups: list[str] = []
    products: list[str] = []


class ClientPatch(_Command):
    """``PATCH /clients/{id}``: only the fields given (``model_fields_set``) change."""

    email: str | None = None
    country: str | None = None
    customer_status: CustomerStatus | None = None
    company_name: str | None = None
    contact_person: str | None = None
    project_id: str | None = None
    language: str | None = None
    phone: str | None = None
    phone_verified: bool | None = None
    note: str | None = None
    referral_source: str | None = None
    characteristic: Characteristic | None = None
    referrer_id: str | None = None
    partner_program: str | None = None
    groups: list[str] | None = None
    products: list[str] | None = None


NOT_NULL: frozenset[str] = frozenset(
    {"email", "country", "customer_status", "language", "phone_verified", "characteristic"}
) | {"groups", "products"}


@dataclass(frozen=True)
class References:
    """Which of the ids a command names exist (looked up by the application layer)."""

    projects: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    clients: frozenset[str] = frozenset()


@dataclass
class Notice:
    """An abuse notice sent to the client, until its deadline passes."""

    violation: Violation
    expired: bool = False


@dataclass
class Client(Aggregate):
    """A client as its stream says it is now."""

    id: str = ""
    erased: bool = False
    login: str | None = None
    customer_status: CustomerStatus = "individual"
    company_name: str | None = None
    language: str = "en"
    penalty_points: int = 0
    services_suspended: bool = False
    notices: dict[str, Notice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()

    @property
    def exists(self) -> bool:
        return bool(self.id) and not self.erased

    # ------------------------------------------------------------ commands

    @classmethod
    def register(
        cls,
        client_id: str,
        card: ClientCard,
        refs: References,
        registered_at: datetime,
        registration_ip: str | None,
    ) -> list[DomainEvent]:
        checked = _checked_card(card.model_dump(), refs, client_id)
        return [
            ClientRegistered(
                client_id=client_id,
                registered_at=registered_at,
                registration_ip=registration_ip,
                **checked,
            )
        ]

    def change(self, patch: ClientPatch, refs: References) -> list[DomainEvent]:
        self._must_exist()
        given = {name: getattr(patch, name) for name in patch.model_fields_set}
        for name, value in given.items():
            if value is None and name in NOT_NULL:
                raise DomainError(name, "cannot be null")
        status = given.get("customer_status", self.customer_status)
        company = given.get("company_name", self.company_name)
        checked = _checked_fields(given, refs, self.id)
        if status == "company" and not str(checked.get("company_name", company) or "").strip():
            raise DomainError("company_name", "required for a company")
        changed = sorted(checked)
        if not changed:
            return []
        fields: list[ClientField] = [name for name in changed]  # type: ignore[misc]
        return [ClientChanged(client_id=self.id, changed=fields, **checked)]

    def reset_password(self, password: str) -> list[DomainEvent]:
        self._must_exist()
        check_password(password)
        return [ClientPasswordReset(client_id=self.id)]

    def erase(self) -> list[DomainEvent]:
        self._must_exist()
        return [ClientErased(client_id=self.id)]

    def message(
        self,
        message_id: str,
        *,
        subject: str,
        text: str,
        language: str,
        category_id: str | None,
        forbid_replies: bool,
        assign_replies_to: str | None,
        attachments: list[Attachment],
        violation: Violation | None,
    ) -> list[DomainEvent]:
        """One message to this client; an abuse notice also adds its penalty points."""
        self._must_exist()
        events: list[DomainEvent] = [
            ClientMessaged(
                client_id=self.id,
                message_id=message_id,
                category_id=category_id,
                subject=subject,
                text=text,
                language=language,
                forbid_replies=forbid_replies,
                assign_replies_to=assign_replies_to,
                attachments=attachments,
                violation=violation,
            )
        ]
        if violation is not None and violation.penalty_points:
            events.append(
                PenaltyPointsAdded(
                    client_id=self.id, message_id=message_id, points=violation.penalty_points
                )
            )
        return events

    def notice_expired(self, message_id: str) -> list[DomainEvent]:
        """The deadline passed without a reaction: take the notice's action, once."""
        notice = self.notices.get(message_id)
        if notice is None or notice.expired or self.erased:
            return []
        action = notice.violation.on_no_reaction
        events: list[DomainEvent] = [
            AbuseNoticeExpired(client_id=self.id, message_id=message_id, action=action)
        ]
        if action == "suspend_services" and not self.services_suspended:
            events.append(
                ClientServicesSuspended(
                    client_id=self.id, reason="abuse_notice", message_id=message_id
                )
            )
        return events

    def suspend_services(self) -> list[DomainEvent]:
        self._must_exist()
        if self.services_suspended:
            return []
        return [ClientServicesSuspended(client_id=self.id, reason="staff")]

    def resume_services(self) -> list[DomainEvent]:
        self._must_exist()
        if not self.services_suspended:
            return []
        return [ClientServicesResumed(client_id=self.id)]

    def impersonated(self, staff_id: str, session_id: str) -> list[DomainEvent]:
        self._must_exist()
        return [ClientImpersonated(client_id=self.id, staff_id=staff_id, session_id=session_id)]

    def _must_exist(self) -> None:
        if not self.exists:
            raise NotFound(f"client {self.id or ''}".strip())

    # ------------------------------------------------------------ state

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, ClientRegistered):
            self.id = event.client_id
            self.login = event.login
            self.customer_status = event.customer_status
            self.company_name = event.company_name
            self.language = event.language
        elif isinstance(event, ClientChanged):
            for name in event.changed:
                if name in ("customer_status", "company_name", "language"):
                    setattr(self, name, getattr(event, name))
        elif isinstance(event, ClientErased):
            self.erased = True
        elif isinstance(event, ClientMessaged) and event.violation is not None:
            self.notices[event.message_id] = Notice(event.violation)
        elif isinstance(event, PenaltyPointsAdded):
            self.penalty_points += event.points
        elif isinstance(event, AbuseNoticeExpired):
            if event.message_id in self.notices:
                self.notices[event.message_id].expired = True
        elif isinstance(event, ClientServicesSuspended):
            self.services_suspended = True
        elif isinstance(event, ClientServicesResumed):
            self.services_suspended = False

    def applied_to(self, client_id: str) -> Self:
        """A fresh aggregate that knows which id it stands for (for ``NotFound`` messages)."""
        self.id = self.id or client_id
        return self


def _checked_card(raw: dict[str, object], refs: References, client_id: str) -> dict[str, object]:
    checked = _checked_fields(raw, refs, client_id)
    checked["login"] = check_login(str(raw["login"]))
    if checked["customer_status"] == "company" and not checked.get("company_name"):
        raise DomainError("company_name", "required for a company")
    return checked


def _checked_fields(raw: dict[str, object], refs: References, client_id: str) -> dict[str, object]:
    """The given fields, cleaned and checked; the first bad one raises naming itself."""
    out: dict[str, object] = {}
    for name, value in raw.items():
        if name == "login":
            continue
        if name == "email":
            out[name] = check_email(str(value))
        elif name == "country":
            out[name] = check_country(str(value))
        elif name == "language":
            out[name] = check_language(str(value))
        elif name in ("company_name", "contact_person", "phone", "referral_source"):
            out[name] = _text(value if value is None else str(value), name)
        elif name == "partner_program":
            out[name] = _text(value if value is None else str(value), name, 64)
        elif name == "note":
            out[name] = _text(value if value is None else str(value), name, MAX_NOTE)
        elif name == "project_id":
            if value is not None and value not in refs.projects:
                raise DomainError("project_id", f"no project {value}")
            out[name] = value
        elif name == "referrer_id":
            if value is not None and (value == client_id or value not in refs.clients):
                raise DomainError("referrer_id", f"no other client {value}")
            out[name] = value
        elif name == "groups":
            groups = _unique(list(value), name)  # type: ignore[call-overload]
            unknown = [g for g in groups if g not in refs.groups]
            if unknown:
                raise DomainError("groups", f"no client group {unknown[0]}")
            out[name] = groups
        elif name == "products":
            products = _unique([str(p).strip().lower() for p in value], name)  # type: ignore[attr-defined]
            if any(not p or len(p) > 64 for p in products):
                raise DomainError("products", "product names are 1 to 64 characters")
            out[name] = products
        else:
            out[name] = value
    if (
        out.get("customer_status") == "company"
        and "company_name" in raw
        and not out.get("company_name")
    ):
        raise DomainError("company_name", "required for a company")
    return out


def check_penalty(points: int) -> None:
    if not 0 <= points <= MAX_PENALTY:
        raise DomainError("violation.penalty_points", f"0 to {MAX_PENALTY}")


def conflict_if_erased(client: Client) -> None:
    if client.erased:
        raise Conflict("client_erased", "this client was erased")
