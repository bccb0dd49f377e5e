"""The client aggregate, message texts and abuse notices: pure rules, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.clients.domain.client import (
    Client,
    ClientCard,
    ClientPatch,
    References,
    check_password,
)
from services.clients.domain.events import (
    AbuseNoticeExpired,
    ClientChanged,
    ClientRegistered,
    PenaltyPointsAdded,
    Violation,
)
from services.clients.domain.messages import Texts, check_violation, fill
from shared.domain.aggregate import DomainError, NotFound

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PROJECT = "p1"
GROUP = "g1"
REFS = References(projects=frozenset({PROJECT}), groups=frozenset({GROUP}))


def card(**changes: object) -> ClientCard:
    fields: dict[str, object] = {
        "login": "alice1",
        "email": "alice@example.com",
        "country": "de",
        "customer_status": "individual",
        "contact_person": "Alice Example",
    }
    fields.update(changes)
    return ClientCard.model_validate(fields)


def registered(**changes: object) -> Client:
    return Client().applied(Client.register("c1", card(**changes), REFS, NOW, "10.0.0.1"))


def field_of(error: pytest.ExceptionInfo[DomainError]) -> str:
    return error.value.field


def test_registration_normalises_country_and_records_ip_and_date() -> None:
    [event] = Client.register("c1", card(), REFS, NOW, "10.0.0.1")
    assert isinstance(event, ClientRegistered)
    assert (event.country, event.registered_at, event.registration_ip) == ("DE", NOW, "10.0.0.1")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"country": "xx"}, "country"),
        ({"customer_status": "company"}, "company_name"),
        ({"customer_status": "company", "company_name": "   "}, "company_name"),
        ({"project_id": "unknown"}, "project_id"),
        ({"groups": ["unknown"]}, "groups"),
        ({"language": "zz"}, "language"),
        ({"login": "имя"}, "login"),
        ({"referrer_id": "c1"}, "referrer_id"),
    ],
)
def test_bad_cards_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(DomainError) as error:
        Client.register("c1", card(**changes), REFS, NOW, None)
    assert field_of(error) == field


def test_a_company_with_its_name_is_fine() -> None:
    [event] = Client.register(
        "c1", card(customer_status="company", company_name="ACME"), REFS, NOW, None
    )
    assert isinstance(event, ClientRegistered) and event.company_name == "ACME"


@pytest.mark.parametrize(
    "password", ["short1", "onlyletters", "12345678", "пароль12345", "with space 1"]
)
def test_password_rule_latin_letters_and_digits(password: str) -> None:
    with pytest.raises(DomainError) as error:
        check_password(password)
    assert field_of(error) == "password"
    assert password not in str(error.value)


def test_a_good_password_passes() -> None:
    check_password("s3cret-Passw0rd")


def test_change_carries_only_what_changed() -> None:
    client = registered()
    [event] = client.change(ClientPatch(contact_person="Alice B", groups=[GROUP]), REFS)
    assert isinstance(event, ClientChanged)
    assert event.changed == ["contact_person", "groups"]
    assert event.email is None


def test_switching_to_company_needs_a_company_name() -> None:
    client = registered()
    with pytest.raises(DomainError) as error:
        client.change(ClientPatch(customer_status="company"), REFS)
    assert field_of(error) == "company_name"
    events = client.change(ClientPatch(customer_status="company", company_name="ACME"), REFS)
    assert events


def test_required_fields_cannot_be_nulled() -> None:
    with pytest.raises(DomainError) as error:
        registered().change(ClientPatch(email=None), REFS)
    assert field_of(error) == "email"


def test_an_erased_client_takes_no_command() -> None:
    client = registered()
    client.applied(client.erase())
    with pytest.raises(NotFound):
        client.change(ClientPatch(note="x"), REFS)


def violation(action: str = "suspend_services", points: int = 3) -> Violation:
    return Violation.model_validate(
        {"deadline": NOW + timedelta(days=1), "on_no_reaction": action, "penalty_points": points}
    )


def message(client: Client, message_id: str, v: Violation | None) -> list[object]:
    return list(
        client.message(
            message_id,
            subject="s",
            text="t",
            language="en",
            category_id=None,
            forbid_replies=False,
            assign_replies_to=None,
            attachments=[],
            violation=v,
        )
    )


def test_an_abuse_notice_adds_penalty_points_and_its_expiry_acts_once() -> None:
    client = registered()
    events = message(client, "m1", violation())
    assert isinstance(events[1], PenaltyPointsAdded) and events[1].points == 3
    client.applied(events)  # type: ignore[arg-type]
    client.applied(message(client, "m2", violation()))  # type: ignore[arg-type]
    assert client.penalty_points == 6
    expired = client.notice_expired("m1")
    assert [type(e).__name__ for e in expired] == ["AbuseNoticeExpired", "ClientServicesSuspended"]
    client.applied(expired)
    assert client.notice_expired("m1") == []  # redelivered expiry: nothing more
    # A second notice expiring while already suspended records the expiry only.
    assert [type(e) for e in client.notice_expired("m2")] == [AbuseNoticeExpired]


def test_move_to_active_does_not_suspend() -> None:
    client = registered()
    client.applied(message(client, "m1", violation("move_to_active", 0)))  # type: ignore[arg-type]
    [event] = client.notice_expired("m1")
    assert isinstance(event, AbuseNoticeExpired) and event.action == "move_to_active"
    assert client.notice_expired("unknown") == []


def test_texts_pick_the_clients_language_strictly_or_fall_back() -> None:
    texts = Texts.of({"en": "Hi", "ru": "Привет"}, {"en": "Body", "ru": "Тело"})
    assert texts.language_for("ru", strict=True) == "ru"
    assert texts.language_for("de", strict=True) is None
    assert texts.language_for("de", strict=False) == "en"
    assert Texts.of("Hi", "Body").subjects == {"en": "Hi"}


def test_texts_in_different_languages_are_refused() -> None:
    with pytest.raises(DomainError) as error:
        Texts.of({"en": "Hi"}, {"ru": "Тело"})
    assert field_of(error) == "text"
    with pytest.raises(DomainError) as error:
        Texts.of({"xx": "Hi"}, {"xx": "Body"})
    assert field_of(error) == "subject.xx"


def test_macros_are_filled_per_client() -> None:
    text = "Dear %client_person%, regards %admin_name%"
    assert fill(text, "Alice", "Bob") == "Dear Alice, regards Bob"


def test_a_violation_deadline_must_be_in_the_future() -> None:
    past = Violation.model_validate(
        {"deadline": NOW - timedelta(minutes=1), "on_no_reaction": "move_to_active"}
    )
    with pytest.raises(DomainError) as error:
        check_violation(past, NOW)
    assert field_of(error) == "violation.deadline"
    assert check_violation(violation(), NOW).penalty_points == 3
