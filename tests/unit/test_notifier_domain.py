"""The notifier's pure rules: subscriptions, who gets what, deadlines, timers, retries."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.notifier.domain.deadlines import Cancel, TicketFacts, plan, warning_at
from services.notifier.domain.delivery import Delivery, RetryPolicy
from services.notifier.domain.events import (
    DeadlineExpired,
    DeliveryAttemptFailed,
    NoticeFailed,
    NoticeQueued,
    NoticeSent,
    TimerCancelled,
    TimerScheduled,
)
from services.notifier.domain.notices import (
    ClientCard,
    ContactCard,
    Recipient,
    StaffCard,
    client_recipients,
    fill,
    notice_id,
    render,
    staff_recipients,
)
from services.notifier.domain.subscription import Subscription
from services.notifier.domain.timer import Deadline, Timer
from shared.domain.aggregate import DomainError
from shared.domain.business_hours import BusinessHours, WeeklyHours

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def subscribed(**notices: list[str]) -> Subscription:
    subscription = Subscription()
    [event] = subscription.change("s", "en", notices)
    return subscription.applied([event])


def test_a_subscription_is_opt_in_per_notice_and_channel() -> None:
    fresh = Subscription()
    assert not fresh.wants("new_ticket", "email")
    subscription = subscribed(new_ticket=["sms", "email", "email"], client_reply=[])
    assert subscription.notices == {"new_ticket": ["email", "sms"]}
    assert subscription.wants("new_ticket", "sms") and not subscription.wants(
        "client_reply", "email"
    )
    assert subscription.change("s", "en", {"new_ticket": ["email", "sms"]}) == []
    with pytest.raises(DomainError) as bad:
        subscription.change("s", "en", {"tea_time": ["email"]})
    assert bad.value.field == "notices.tea_time"
    with pytest.raises(DomainError):
        subscription.change("s", "en", {"new_ticket": ["pigeon"]})


def test_staff_get_only_what_they_subscribed_to_at_their_addresses() -> None:
    cards = [
        StaffCard("a", "a@x", "+1"),
        StaffCard("b", "b@x", None),
        StaffCard("c", "c@x", "+3", active=False),
        StaffCard("d", "d@x", "+4"),
    ]
    subscriptions = {
        "a": subscribed(new_ticket=["email", "sms"]),
        "b": subscribed(new_ticket=["sms"]),  # no phone: nothing
        "c": subscribed(new_ticket=["email"]),  # disabled
        "d": subscribed(new_ticket=["email"]),
    }
    found = staff_recipients("new_ticket", cards, subscriptions, exclude="d")
    assert [(r.recipient_id, r.channel, r.to) for r in found] == [
        ("a", "email", "a@x"),
        ("a", "sms", "+1"),
    ]


def test_clients_and_contacts_with_notifications_on() -> None:
    card = ClientCard(
        "c1",
        "ru",
        "c@x",
        phone="+7",
        contacts=(
            ContactCard("on", "on@x", "+8"),
            ContactCard("off", "off@x", "+9", notifications=False),
            ContactCard("gen", "tg.1@contacts.invalid", None, email_generated=True),
        ),
    )
    reply = client_recipients("staff_reply", card)
    assert [(r.recipient_id, r.channel, r.language) for r in reply] == [
        ("c1", "email", "ru"),
        ("on", "email", "ru"),
    ]
    abuse = client_recipients("abuse_notice", card)
    assert {(r.recipient_id, r.channel) for r in abuse} == {
        ("c1", "email"), ("c1", "sms"), ("on", "email"), ("on", "sms"),
    }  # fmt: skip
    assert all(r.subject_id == "c1" for r in abuse)
    assert client_recipients("staff_reply", ClientCard("c2", "en", "x@x", erased=True)) == []


def test_texts_are_in_the_recipients_language_with_macros_filled() -> None:
    assert fill("%a% and %b% and %unknown%", {"a": "1", "b": "2"}) == "1 and 2 and %unknown%"
    ru = Recipient("client", "c", "c", "email", "c@x", "ru")
    macros = {
        "ticket_ref": "#1042", "ticket_subject": "Сайт\nне работает", "client_person": "Иван",
        "admin_name": "Ольга", "message": "Перезапустили сервер.",
    }  # fmt: skip
    notice = render("staff_reply", ru, macros)
    assert notice.subject == "Re: [#1042] Сайт не работает"  # one line, whatever was filled in
    assert "Иван" in notice.body and "Ольга" in notice.body
    assert "Перезапустили сервер." in notice.body and "%" not in notice.body
    sms = render(
        "abuse_notice", Recipient("client", "c", "c", "sms", "+7", "en"), {"deadline": "D"}
    )
    assert sms.body == "Abuse notice: respond by D, see your e-mail"


def test_a_notice_id_is_its_cause_recipient_and_channel() -> None:
    assert notice_id("e", "r", "email") == notice_id("e", "r", "email")
    assert (
        len(
            {
                notice_id("e", "r", "email"),
                notice_id("e", "r", "sms"),
                notice_id("e2", "r", "email"),
            }
        )
        == 3
    )


def test_a_timer_fires_once_and_not_before_its_time() -> None:
    timer = Timer()
    deadline = Deadline("ticket_auto_close", "t1", NOW, ticket_id="t1")
    [scheduled] = timer.schedule(deadline, "src")
    assert isinstance(scheduled, TimerScheduled) and scheduled.timer_id == "ticket_auto_close-t1"
    timer.applied([scheduled])
    assert timer.schedule(deadline, "again") == []
    assert timer.fire(NOW - timedelta(seconds=1)) == []
    [fired] = timer.fire(NOW)
    assert isinstance(fired, DeadlineExpired) and fired.ticket_id == "t1"
    timer.applied([fired])
    assert timer.fire(NOW + timedelta(days=1)) == []
    assert timer.cancel("ticket_auto_close-t1", "late", "src") == []
    # A new deadline for the same thing fires again, once.
    [moved] = timer.schedule(Deadline("ticket_auto_close", "t1", NOW + timedelta(days=1)), "s2")
    timer.applied([moved])
    [cancelled] = timer.cancel("ticket_auto_close-t1", "the client answered", "s3")
    assert isinstance(cancelled, TimerCancelled)
    assert timer.applied([cancelled]).fire(NOW + timedelta(days=2)) == []


def test_an_event_handled_again_never_moves_a_timer_twice() -> None:
    """A redelivery older than the inbox remembers: the old fact changes nothing."""
    timer = Timer()
    deadline = Deadline("ticket_auto_close", "t1", NOW, ticket_id="t1")
    timer.applied(timer.schedule(deadline, "staff-reply-1"))
    timer.applied(timer.fire(NOW))
    assert timer.schedule(deadline, "staff-reply-1") == []  # not set again, fired already
    later = Deadline("ticket_auto_close", "t1", NOW + timedelta(days=3), ticket_id="t1")
    timer.applied(timer.schedule(later, "staff-reply-2"))
    timer.applied(timer.cancel("ticket_auto_close-t1", "the client answered", "client-msg-1"))
    timer.applied(timer.schedule(later, "staff-reply-3"))
    # The old cancelling fact again: the newer deadline stands.
    assert timer.cancel("ticket_auto_close-t1", "the client answered", "client-msg-1") == []
    assert timer.status == "scheduled"
    [fired] = timer.fire(NOW + timedelta(days=3))
    assert isinstance(fired, DeadlineExpired)


def test_retries_back_off_then_fail() -> None:
    policy = RetryPolicy(
        attempts=3, first_delay=timedelta(seconds=2), max_delay=timedelta(seconds=3)
    )
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [timedelta(seconds=s) for s in (2, 3, 3)]
    delivery = Delivery().applied(
        [NoticeQueued(
            notice_id="n", subject_id="s", kind="new_ticket", channel="email",
            recipient_kind="staff", recipient_id="s", to="s@x", subject="x", body="y",
            language="en", event_id="e", event_type_name="TicketOpened",
        )]
    )  # fmt: skip
    [first] = delivery.attempt_failed("down", NOW, policy)
    assert isinstance(first, DeliveryAttemptFailed) and first.retry_at == NOW + timedelta(seconds=2)
    [second] = delivery.applied([first]).attempt_failed("down", NOW, policy)
    [last] = delivery.applied([second]).attempt_failed("down", NOW, policy)
    assert isinstance(last, NoticeFailed) and last.attempt == 3
    assert delivery.applied([last]).sent(NOW) == []
    fresh = Delivery().applied(
        [NoticeQueued.model_validate({"notice_id": "n2", "subject_id": "s", **_queued()})]
    )
    [sent] = fresh.sent(NOW)
    assert isinstance(sent, NoticeSent) and sent.attempt == 1


def _queued() -> dict[str, str]:
    return {
        "kind": "new_ticket", "channel": "email", "recipient_kind": "staff", "recipient_id": "s",
        "to": "s@x", "subject": "x", "body": "y", "language": "en", "event_id": "e",
        "event_type_name": "TicketOpened",
    }  # fmt: skip


def test_the_response_warning_counts_business_hours_back() -> None:
    lead = timedelta(minutes=30)
    assert warning_at(None, NOW, lead) == NOW - lead
    nine_to_five = BusinessHours(
        "UTC",
        WeeklyHours.model_validate(
            {d: [("09:00", "17:00")] for d in ("mon", "tue", "wed", "thu", "fri")}
        ),
        (date(2026, 12, 1),),  # a Tuesday, closed
    )
    due = datetime(2026, 12, 2, 9, 15, tzinfo=UTC)  # Wednesday, 15 minutes after opening
    # 15 minutes on Wednesday, 15 more before Monday's closing (Tuesday is a holiday).
    assert warning_at(nine_to_five, due, lead) == datetime(2026, 11, 30, 16, 45, tzinfo=UTC)


def test_which_facts_set_and_cancel_which_deadlines() -> None:
    def warn(_: str | None, due: datetime) -> datetime:
        return due - timedelta(minutes=30)

    deadline = (NOW + timedelta(days=2)).isoformat()
    [abuse] = plan(
        "ClientMessaged",
        {"client_id": "c", "message_id": "m", "violation": {"deadline": deadline}},
        None,
        warn,
    )
    assert isinstance(abuse, Deadline) and abuse.timer_id == "abuse_notice-m-c"
    thread = TicketFacts("t", "c", None, None, message_ref="m")
    steps = plan(
        "TicketMessagePosted",
        {"ticket_id": "t", "author_kind": "client", "due_at": NOW.isoformat(), "message_id": "x"},
        thread,
        warn,
    )
    assert Cancel("abuse_notice-m-c", "the client answered") in steps
    assert any(isinstance(s, Deadline) and s.due_at == NOW - timedelta(minutes=30) for s in steps)
    staff = plan(
        "TicketMessagePosted",
        {
            "ticket_id": "t", "author_kind": "staff", "message_id": "r1",
            "close_due_at": deadline, "rating_due_at": NOW.isoformat(),
        },
        thread,
        warn,
    )  # fmt: skip
    ids = [s.timer_id for s in staff]
    assert ids == ["response_time-t", "ticket_auto_close-t", "rating_request-t-r1"]
    assert plan("TicketMessagePosted", {"ticket_id": "t", "internal": True}, thread, warn) == []
    closed = plan("TicketClosed", {"ticket_id": "t", "rating_due_at": deadline}, thread, warn)
    assert [s.timer_id for s in closed][-1] == "rating_request-t-ticket"
