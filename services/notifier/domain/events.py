"""Events of the notifier context, published on ``notifier.events``.

Streams:

* ``subscription-<staff_id>``: which notices a staff member gets, by which channel;
* ``timer-<timer_id>``: one deadline (scheduled, moved, cancelled, expired);
  ``timer_id`` names what it is about (``ticket_auto_close-<ticket_id>``, ...),
  so a later fact about the same thing moves the same timer;
* ``notice-<notice_id>``: one notice to one recipient by one channel and every
  attempt to deliver it. ``notice_id`` is derived from the source event's id,
  the recipient and the channel, so deciding the same notice twice (a
  redelivered event, a restart) appends nothing new.

``DeadlineExpired`` is what other contexts consume: ``kind`` ``abuse_notice``
(with ``client_id``, ``message_id``) makes the clients service act on the
notice; ``ticket_auto_close`` and ``rating_request`` (with ``ticket_id``,
``message_id`` for a per-message rating) go to the tickets service;
``response_time`` (a warning before a ticket's expected response runs out)
is the notifier's own.

A notice's address, subject and body are personal data: sealed with the key of
the person they are about (``subject_id``: the staff member or the client) like
the other contexts' personal fields (``shared.privacy.shredding``).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from shared.domain.events import DomainEvent, EventRegistry

registry = EventRegistry()

Channel = Literal["email", "sms"]
Language = Literal["en", "ru"]
StaffNotice = Literal["new_ticket", "client_reply", "ticket_transferred", "deadline_near"]
ClientNotice = Literal[
    "staff_reply", "client_message", "abuse_notice", "rating_request", "transfer_notice"
]
NoticeKind = Literal[
    "new_ticket",
    "client_reply",
    "ticket_transferred",
    "deadline_near",
    "staff_reply",
    "client_message",
    "abuse_notice",
    "rating_request",
    "transfer_notice",
    "password_reset",
]
TimerKind = Literal["abuse_notice", "ticket_auto_close", "rating_request", "response_time"]
RecipientKind = Literal["staff", "client", "contact"]

STAFF_NOTICES: tuple[StaffNotice, ...] = (
    "new_ticket",
    "client_reply",
    "ticket_transferred",
    "deadline_near",
)
CHANNELS: tuple[Channel, ...] = ("email", "sms")


# ---------------------------------------------------------------- subscriptions


@registry.register
class SubscriptionChanged(DomainEvent):
    """The whole subscription of a staff member after a change: notice -> channels."""

    event_type = "SubscriptionChanged"
    staff_id: str
    language: Language
    notices: dict[StaffNotice, list[Channel]]


# ---------------------------------------------------------------- timers


@registry.register
class TimerScheduled(DomainEvent):
    """A deadline is set (or moved): at ``due_at``, fire ``kind`` with ``data``."""

    event_type = "TimerScheduled"
    timer_id: str
    kind: TimerKind
    due_at: datetime
    ticket_id: str | None = None
    client_id: str | None = None
    message_id: str | None = None
    department_id: str | None = None
    response_due_at: datetime | None = None  # a response-time warning: when the response is due
    source_event_id: str


@registry.register
class TimerCancelled(DomainEvent):
    """The deadline no longer matters (the client answered, staff replied, closed, ...)."""

    event_type = "TimerCancelled"
    timer_id: str
    reason: str
    source_event_id: str


@registry.register
class DeadlineExpired(DomainEvent):
    """A timer fired: its deadline passed while it was still scheduled."""

    event_type = "DeadlineExpired"
    timer_id: str
    kind: TimerKind
    due_at: datetime
    ticket_id: str | None = None
    client_id: str | None = None
    message_id: str | None = None
    department_id: str | None = None
    response_due_at: datetime | None = None


# ---------------------------------------------------------------- notices and deliveries


class _NoticeEvent(DomainEvent):
    """An event of one notice; its personal fields are sealed with ``subject_id``'s key."""

    subject_field: ClassVar[str] = "subject_id"
    personal_fields: ClassVar[tuple[str, ...]] = ()
    notice_id: str
    subject_id: str


@registry.register
class NoticeQueued(_NoticeEvent):
    """A notice was decided for one recipient and channel; ``event_id`` is its cause."""

    event_type = "NoticeQueued"
    personal_fields = ("to", "subject", "body", "files")
    kind: NoticeKind
    channel: Channel
    recipient_kind: RecipientKind
    recipient_id: str
    to: str | None
    subject: str | None
    body: str | None
    language: Language
    event_id: str
    event_type_name: str
    # A mail of a conversation: the ticket (or message) it belongs to, for the threading
    # headers; the address a reply by mail goes to; the files to attach, as a sealed JSON
    # list of {"service", "path", "filename", "content_type"} fetched when sending.
    thread_id: str | None = None
    reply_to: str | None = None
    files: str | None = None
    # A rating request: what its link rates ("<ticket_id>[/<message_id>]"); the signed link
    # itself is made when the mail is sent, never kept (shared.access.rating_links).
    rating_of: str | None = None
    # A password reset: its id at identity, which hands out the link when the mail is
    # sent; the link (a secret) is never in a notifier event or read model.
    reset_of: str | None = None


@registry.register
class DeliveryAttemptFailed(_NoticeEvent):
    """One attempt failed; the next is due at ``retry_at``."""

    event_type = "DeliveryAttemptFailed"
    attempt: int
    error: str
    retry_at: datetime


@registry.register
class NoticeSent(_NoticeEvent):
    """The SMTP server or the SMS gateway accepted the notice."""

    event_type = "NoticeSent"
    attempt: int
    sent_at: datetime


@registry.register
class NoticeFailed(_NoticeEvent):
    """The last attempt failed too: the notice is given up."""

    event_type = "NoticeFailed"
    attempt: int
    error: str
    failed_at: datetime
