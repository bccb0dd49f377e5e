"""The support catalogue's aggregates: categories, templates, announcements, settings, paid."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.tickets.domain.catalog import (
    MACROS,
    MAX_CREDIT,
    MAX_NAME,
    MAX_SORT,
    Announcement,
    AnnouncementDraft,
    Category,
    CategoryDraft,
    CategoryPatch,
    PaidBalance,
    SettingsPatch,
    SupportSettings,
    Template,
    TemplateDraft,
    TemplatePatch,
    announcement_text,
    render,
)
from services.tickets.domain.catalog_events import (
    CATALOG_EVENTS,
    AnnouncementEnded,
    AnnouncementPublished,
    LocalizedText,
    PaidRequestReturned,
    PaidRequestsCredited,
    PaidRequestTaken,
    ResponseTemplateChanged,
    SupportSettingsChanged,
    TicketCategoryChanged,
    TicketCategoryCreated,
    TicketCategoryDeleted,
)
from services.tickets.domain.events import registry
from shared.domain.aggregate import Aggregate, DomainError, NotFound, PaymentRequired
from shared.domain.events import Actor, DomainEvent, RecordedEvent

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def run(aggregate: Aggregate, events: list[DomainEvent]) -> list[DomainEvent]:
    """Apply a command's events, as the application layer does after appending them."""
    aggregate.applied(events)
    return events


def field_of(error: pytest.ExceptionInfo[DomainError]) -> str:
    return error.value.field


def category(**overrides: Any) -> Category:
    draft = CategoryDraft.model_validate({"topic": "Billing", "department_id": "d-1", **overrides})
    return Category().applied(Category.create("cat-1", draft))


# ---------------------------------------------------------------- the registry


def test_every_catalogue_event_is_registered_and_round_trips() -> None:
    assert set(registry.models()) >= CATALOG_EVENTS
    events: list[DomainEvent] = [
        AnnouncementPublished(
            announcement_id="a",
            text="plain",
            starts_at=NOW,
            ends_at=NOW + HOUR,
            blocking=True,
        ),
        AnnouncementPublished(
            announcement_id="b",
            text=LocalizedText(en="Maintenance", ru="Работы"),
            starts_at=NOW,
            ends_at=NOW + HOUR,
            blocking=False,
        ),
        TicketCategoryChanged(category_id="c", changed=["project_id"], project_id=None),
        SupportSettingsChanged(
            changed=["close_after_days"],
            transfer_notices_shown=3,
            close_after_days=None,
            rate_after_days=1,
            rating_mode="ticket",
        ),
    ]
    for position, event in enumerate(events, 1):
        new = registry.encode(event, actor=Actor(id="s-1", kind="staff"))
        recorded = RecordedEvent(
            position=position,
            stream="s",
            stream_version=1,
            event_id=uuid.uuid4(),
            type=new.type,
            schema_version=new.schema_version,
            occurred_at=NOW,
            correlation_id=None,
            causation_id=None,
            actor=new.actor,
            data=new.data,
        )
        assert registry.decode(RecordedEvent.from_json(recorded.to_json())) == event


def test_a_change_event_sets_exactly_what_it_lists() -> None:
    with pytest.raises(ValidationError):
        TicketCategoryChanged(category_id="c", changed=["paid"])  # listed, no value
    with pytest.raises(ValidationError):
        TicketCategoryChanged(category_id="c", changed=["sort"], sort=1, paid=True)  # not listed
    with pytest.raises(ValidationError):
        TicketCategoryChanged(category_id="c", changed=[])
    with pytest.raises(ValidationError):
        ResponseTemplateChanged(template_id="t", changed=["name", "name"], name="x")


# ---------------------------------------------------------------- categories


def test_create_a_category() -> None:
    draft = CategoryDraft(
        topic=LocalizedText(en="  Billing ", ru=" Оплата "),
        department_id="d-1",
        project_id="p-1",
        paid=True,
        warning="  Paid: one request\nis taken. ",
        sort=-5,
    )
    [event] = Category.create("cat-1", draft)
    assert event == TicketCategoryCreated(
        category_id="cat-1",
        topic=LocalizedText(en="Billing", ru="Оплата"),
        department_id="d-1",
        project_id="p-1",
        paid=True,
        warning="Paid: one request\nis taken.",
        sort=-5,
    )
    c = Category().applied([event])
    assert (c.exists, c.paid, c.sort, c.version) == (True, True, -5, 1)
    # A plain topic is the English one; defaults: every project, free, no warning.
    plain = category()
    assert plain.topic == LocalizedText(en="Billing", ru="")
    assert (plain.project_id, plain.paid, plain.warning, plain.sort) == (None, False, "", 0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"topic": "  "}, "topic.en"),
        ({"topic": {"en": "", "ru": "Оплата"}}, "topic.en"),
        ({"topic": "x" * (MAX_NAME + 1)}, "topic.en"),
        ({"topic": {"en": "ok", "ru": "y" * (MAX_NAME + 1)}}, "topic.ru"),
        ({"topic": "tab\there"}, "topic.en"),
        ({"department_id": ""}, "department_id"),
        ({"department_id": " d-1"}, "department_id"),
        ({"department_id": "d" * 65}, "department_id"),
        ({"project_id": ""}, "project_id"),
        ({"sort": MAX_SORT + 1}, "sort"),
        ({"sort": -MAX_SORT - 1}, "sort"),
        ({"warning": "w" * 2001}, "warning"),
        ({"warning": "bell\x07"}, "warning"),
    ],
)
def test_a_bad_category_names_the_field(overrides: dict[str, Any], field: str) -> None:
    draft = CategoryDraft.model_validate({"topic": "Billing", "department_id": "d-1", **overrides})
    with pytest.raises(DomainError) as error:
        Category.create("cat-1", draft)
    assert field_of(error) == field


def test_an_unknown_department_is_refused_when_departments_are_known() -> None:
    draft = CategoryDraft(topic="Billing", department_id="d-9")
    with pytest.raises(DomainError) as error:
        Category.create("cat-1", draft, lambda d: d == "d-1")
    assert field_of(error) == "department_id"
    assert Category.create("cat-1", draft, lambda d: d == "d-9")
    c = category()
    with pytest.raises(DomainError):
        c.change(CategoryPatch(department_id="d-9"), lambda d: False)
    # Keeping the department it has needs no check.
    assert c.change(CategoryPatch(department_id="d-1"), lambda d: False) == []


def test_change_a_category() -> None:
    c = category(project_id="p-1")
    assert c.change(CategoryPatch(topic="Billing", sort=0, paid=False)) == []  # as it is
    events = run(
        c,
        c.change(CategoryPatch(project_id=None, paid=True, topic={"en": "Bills", "ru": "Счета"})),
    )
    assert events == [
        TicketCategoryChanged(
            category_id="cat-1",
            changed=["topic", "project_id", "paid"],
            topic=LocalizedText(en="Bills", ru="Счета"),
            project_id=None,
            paid=True,
        )
    ]
    assert (c.project_id, c.paid, c.topic.ru, c.version) == (None, True, "Счета", 2)
    for name in ("topic", "department_id", "paid", "warning", "sort"):
        with pytest.raises(DomainError) as error:
            c.change(CategoryPatch.model_validate({name: None}))
        assert field_of(error) == name


def test_a_deleted_category_takes_no_command() -> None:
    c = category()
    assert run(c, c.delete()) == [TicketCategoryDeleted(category_id="cat-1")]
    assert not c.exists
    with pytest.raises(NotFound):
        c.delete()
    with pytest.raises(NotFound):
        c.change(CategoryPatch(sort=1))
    with pytest.raises(NotFound):
        Category().delete()


def test_command_bodies_take_no_loose_types() -> None:
    for bad in ({"paid": "yes"}, {"paid": 1}, {"sort": "1"}, {"sort": 1.5}, {"color": "red"}):
        with pytest.raises(ValidationError):
            CategoryDraft.model_validate({"topic": "t", "department_id": "d", **bad})
    with pytest.raises(ValidationError):
        SettingsPatch.model_validate({"transfer_notices_shown": True})
    with pytest.raises(ValidationError):
        SettingsPatch.model_validate({"rating_mode": "stars"})


# ---------------------------------------------------------------- templates


def test_render_fills_known_macros_once_and_leaves_the_rest() -> None:
    values = {
        "client_person": "Anna %admin_name%",  # not expanded again
        "admin_name": "Maria",
        "ticket_id": "T-1",
        "ticket_subject": "VPS down",
        "department": "Technical support",
        "unknown": "never used",
    }
    text = (
        "Dear %client_person%, re %ticket_subject% (#%ticket_id%, %department%): "
        "%admin_name% %unknown% %CLIENT_PERSON% 100% sure%"
    )
    assert render(text, values) == (
        "Dear Anna %admin_name%, re VPS down (#T-1, Technical support): "
        "Maria %unknown% %CLIENT_PERSON% 100% sure%"
    )
    # A known macro without a value stays as written.
    assert render("Hi %client_person%", {}) == "Hi %client_person%"
    assert set(MACROS) == {
        "client_person",
        "admin_name",
        "ticket_id",
        "ticket_subject",
        "department",
    }


def test_template_lifecycle() -> None:
    t = Template().applied(
        Template.create(
            "t-1",
            TemplateDraft(
                name=" Greeting ", subject="Re: %ticket_subject%", body="Hi %client_person%"
            ),
        )
    )
    assert (t.name, t.version) == ("Greeting", 1)
    assert t.rendered({"ticket_subject": "Down", "client_person": "Ann"}) == ("Re: Down", "Hi Ann")
    assert t.change(TemplatePatch(name="Greeting")) == []
    run(t, t.change(TemplatePatch(body="Hello\n%client_person%", subject="")))
    assert (t.subject, t.body, t.version) == ("", "Hello\n%client_person%", 2)
    for patch, field in (
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"body": " "}, "body"),
        ({"body": None}, "body"),
        ({"subject": "s" * 301}, "subject"),
        ({"subject": "line\nbreak"}, "subject"),
    ):
        with pytest.raises(DomainError) as error:
            t.change(TemplatePatch.model_validate(patch))
        assert field_of(error) == field
    with pytest.raises(DomainError) as error:
        Template.create("t-2", TemplateDraft(name="x", body="b" * 20_001))
    assert field_of(error) == "body"
    run(t, t.delete())
    with pytest.raises(NotFound):
        t.rendered({})
    with pytest.raises(NotFound):
        t.change(TemplatePatch(name="again"))


# ---------------------------------------------------------------- announcements


def announcement(**overrides: Any) -> Announcement:
    fields = {"text": "Maintenance", "starts_at": NOW, "ends_at": NOW + HOUR, **overrides}
    return Announcement().applied(
        Announcement.publish("a-1", AnnouncementDraft.model_validate(fields), NOW - HOUR)
    )


def test_an_announcement_is_active_inside_its_window_only() -> None:
    a = announcement(blocking=True)
    assert a.blocking
    assert not a.active_at(NOW - timedelta(seconds=1))  # before
    assert a.active_at(NOW)  # starts inclusive
    assert a.active_at(NOW + HOUR - timedelta(seconds=1))  # inside
    assert not a.active_at(NOW + HOUR)  # ends exclusive
    assert not a.active_at(NOW + 2 * HOUR)  # after


def test_ending_an_announcement_cuts_its_window() -> None:
    a = announcement()
    events = run(a, a.end(NOW + timedelta(minutes=10)))
    assert events == [
        AnnouncementEnded(announcement_id="a-1", ended_at=NOW + timedelta(minutes=10))
    ]
    assert a.until == NOW + timedelta(minutes=10)
    assert a.active_at(NOW + timedelta(minutes=5))
    assert not a.active_at(NOW + timedelta(minutes=10))
    assert a.end(NOW + timedelta(minutes=11)) == []  # over already: nothing
    # One ended before it began is never active.
    early = announcement()
    run(early, early.end(NOW - timedelta(minutes=30)))
    assert not any(early.active_at(NOW + k * timedelta(minutes=10)) for k in range(-6, 12))
    # One past its end is over: ending it writes nothing.
    assert announcement().end(NOW + 2 * HOUR) == []
    with pytest.raises(NotFound):
        Announcement().end(NOW)


def test_announcement_texts_and_defaults() -> None:
    plain = announcement(text="  Down for maintenance  ")
    assert plain.text == "Down for maintenance"
    assert announcement_text(plain.text, "ru") == "Down for maintenance"
    localized = announcement(text={"en": "Works", "ru": "Работы"})
    assert announcement_text(localized.text, "ru") == "Работы"
    assert announcement_text(announcement(text={"en": "Works"}).text, "ru") == "Works"
    # Without starts_at it starts when published.
    [event] = Announcement.publish(
        "a-2", AnnouncementDraft(text="now", ends_at=NOW + HOUR), NOW - HOUR
    )
    assert isinstance(event, AnnouncementPublished)
    assert (event.starts_at, event.blocking) == (NOW - HOUR, False)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"text": " "}, "text"),
        ({"text": {"en": "", "ru": "x"}}, "text.en"),
        ({"text": "x" * 2001}, "text"),
        ({"starts_at": datetime(2030, 1, 1, 12)}, "starts_at"),  # no time zone
        ({"ends_at": datetime(2030, 1, 1, 13)}, "ends_at"),
        ({"ends_at": NOW}, "ends_at"),  # not after the start
        ({"ends_at": NOW - HOUR}, "ends_at"),
        ({"starts_at": NOW - 3 * HOUR, "ends_at": NOW - 2 * HOUR}, "ends_at"),  # past
    ],
)
def test_a_bad_announcement_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(DomainError) as error:
        announcement(**overrides)
    assert field_of(error) == field


# ---------------------------------------------------------------- settings


def test_settings_have_defaults_and_change_whole() -> None:
    s = SupportSettings()
    assert (s.transfer_notices_shown, s.close_after_days, s.rate_after_days, s.rating_mode) == (
        3,
        7,
        1,
        "ticket",
    )
    assert s.change(SettingsPatch(transfer_notices_shown=3)) == []
    events = run(s, s.change(SettingsPatch(close_after_days=None, rating_mode="message")))
    assert events == [
        SupportSettingsChanged(
            changed=["close_after_days", "rating_mode"],
            transfer_notices_shown=3,
            close_after_days=None,
            rate_after_days=1,
            rating_mode="message",
        )
    ]
    run(s, s.change(SettingsPatch(rate_after_days=0, transfer_notices_shown=0)))
    assert (s.transfer_notices_shown, s.rate_after_days, s.version) == (0, 0, 2)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"transfer_notices_shown": -1}, "transfer_notices_shown"),
        ({"transfer_notices_shown": 101}, "transfer_notices_shown"),
        ({"transfer_notices_shown": None}, "transfer_notices_shown"),
        ({"close_after_days": 0}, "close_after_days"),
        ({"close_after_days": 366}, "close_after_days"),
        ({"rate_after_days": -1}, "rate_after_days"),
        ({"rate_after_days": 366}, "rate_after_days"),
        ({"rating_mode": None}, "rating_mode"),
    ],
)
def test_bad_settings_name_the_field(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(DomainError) as error:
        SupportSettings().change(SettingsPatch.model_validate(patch))
    assert field_of(error) == field


# ---------------------------------------------------------------- paid requests


def test_paid_requests_are_credited_taken_once_per_ticket_and_returned_once() -> None:
    b = PaidBalance.for_client("cl-1")
    with pytest.raises(PaymentRequired) as empty:
        b.take("t-1")
    assert empty.value.code == "no_paid_requests"
    assert run(b, b.credit(2, " bought ")) == [
        PaidRequestsCredited(client_id="cl-1", amount=2, comment="bought", balance=2)
    ]
    assert run(b, b.take("t-1")) == [PaidRequestTaken(client_id="cl-1", ticket_id="t-1", balance=1)]
    assert b.take("t-1") == []  # a redelivered take: nothing
    run(b, b.take("t-2"))
    assert b.balance == 0
    with pytest.raises(PaymentRequired):
        b.take("t-3")
    assert run(b, b.give_back("t-1")) == [
        PaidRequestReturned(client_id="cl-1", ticket_id="t-1", balance=1)
    ]
    assert b.give_back("t-1") == []  # returned once only
    assert b.give_back("t-never") == []
    assert b.balance == 1
    # The ticket holds none now: taking for it again takes one.
    run(b, b.take("t-1"))
    assert (b.balance, b.held, b.version) == (0, {"t-1", "t-2"}, 5)


@pytest.mark.parametrize("amount", [0, -1, MAX_CREDIT + 1, True])
def test_a_credit_needs_a_sensible_amount(amount: int) -> None:
    with pytest.raises(DomainError) as error:
        PaidBalance.for_client("cl-1").credit(amount)
    assert field_of(error) == "amount"


def test_paid_request_ids_are_checked() -> None:
    with pytest.raises(DomainError) as error:
        PaidBalance.for_client("")
    assert field_of(error) == "client_id"
    with pytest.raises(DomainError) as error:
        PaidBalance.for_client("cl-1").credit(1, "c" * 501)
    assert field_of(error) == "comment"
    with pytest.raises(DomainError) as error:
        PaidBalance.for_client("cl-1").take(" ")
    assert field_of(error) == "ticket_id"
