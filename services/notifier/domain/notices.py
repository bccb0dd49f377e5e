"""Who gets which notice, by which channel, in which words. Pure: no I/O.

Staff get what they subscribed to (``Subscription``), at the e-mail and phone
of their staff card. Clients get replies to their tickets, messages, abuse
notices and rating requests at their account's e-mail (abuse notices also by
SMS to their phone); their company's contacts get a copy only while the
contact's notifications are on. Texts are in the recipient's language (en, ru)
with the ``%macros%`` filled.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from services.notifier.domain.events import (
    Channel,
    ClientNotice,
    Language,
    NoticeKind,
    NoticeQueued,
    RecipientKind,
    StaffNotice,
)
from services.notifier.domain.subscription import Subscription

# Fixed: a notice id must come out the same in every process and after every restart.
NOTICE_NAMESPACE = uuid.UUID("6f1d3c52-3f0a-4d5e-9b55-1c6e0f7b2a10")


def notice_id(event_id: str, recipient_id: str, channel: Channel) -> str:
    """The dedupe key of a notice: its cause, its recipient and its channel."""
    return str(uuid.uuid5(NOTICE_NAMESPACE, f"{event_id}/{recipient_id}/{channel}"))


def language_of(value: str | None) -> Language:
    return "ru" if value == "ru" else "en"


@dataclass(frozen=True)
class StaffCard:
    staff_id: str
    email: str | None
    phone: str | None
    name_en: str = ""
    name_ru: str = ""
    active: bool = True

    def name(self, language: Language) -> str:
        return (self.name_ru if language == "ru" else "") or self.name_en


@dataclass(frozen=True)
class ContactCard:
    contact_id: str
    email: str | None
    phone: str | None
    name: str | None = None
    email_generated: bool = False
    notifications: bool = True


@dataclass(frozen=True)
class ClientCard:
    """What the clients service tells about a client when a notice is due."""

    client_id: str
    language: Language
    email: str | None
    phone: str | None = None
    contact_person: str | None = None
    login: str | None = None
    erased: bool = False
    contacts: tuple[ContactCard, ...] = ()

    @property
    def person(self) -> str:
        return self.contact_person or self.login or ""


@dataclass(frozen=True)
class Recipient:
    kind: RecipientKind
    recipient_id: str
    subject_id: str  # whose key seals the notice (the staff member, or the client)
    channel: Channel
    to: str
    language: Language


@dataclass(frozen=True)
class Conversation:
    """What makes a client's mail part of a conversation: the thread it belongs to (a
    ticket, or a message to the client), where a reply by mail goes, the files it carries
    (``{"service", "path", "filename", "content_type"}``, fetched when it is sent)."""

    thread_id: str | None = None
    reply_to: str | None = None
    files: tuple[dict[str, str], ...] = ()
    rating_of: str | None = None  # "<ticket_id>" or "<ticket_id>/<message_id>": a rating link
    reset_of: str | None = None  # a password reset's id: its link is asked for when sent


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    recipient: Recipient
    subject: str
    body: str
    conversation: Conversation = Conversation()

    def queued(self, event_id: str, event_type: str) -> NoticeQueued:
        r = self.recipient
        return NoticeQueued(
            notice_id=notice_id(event_id, r.recipient_id, r.channel),
            subject_id=r.subject_id,
            kind=self.kind,
            channel=r.channel,
            recipient_kind=r.kind,
            recipient_id=r.recipient_id,
            to=r.to,
            subject=self.subject,
            body=self.body,
            language=r.language,
            event_id=event_id,
            event_type_name=event_type,
            thread_id=self.conversation.thread_id,
            rating_of=self.conversation.rating_of,
            reset_of=self.conversation.reset_of,
            reply_to=self.conversation.reply_to,
            files=orjson.dumps(list(self.conversation.files)).decode()
            if self.conversation.files and r.channel == "email"
            else None,
        )


# ---------------------------------------------------------------- who


def staff_recipients(
    notice: StaffNotice,
    staff: Iterable[StaffCard],
    subscriptions: Mapping[str, Subscription],
    *,
    exclude: str | None = None,
) -> list[Recipient]:
    """The staff among ``staff`` subscribed to ``notice``, per channel they chose."""
    found: list[Recipient] = []
    for card in staff:
        subscription = subscriptions.get(card.staff_id)
        if subscription is None or not card.active or card.staff_id == exclude:
            continue
        addresses: dict[Channel, str | None] = {"email": card.email, "sms": card.phone}
        for channel, address in addresses.items():
            if address and subscription.wants(notice, channel):
                found.append(
                    Recipient(
                        "staff",
                        card.staff_id,
                        card.staff_id,
                        channel,
                        address,
                        subscription.language,
                    )
                )
    return found


def reset_recipient(
    kind: RecipientKind, principal_id: str, email: str | None, language: Language
) -> list[Recipient]:
    """A password reset goes to the principal's own address only, by e-mail only
    (never a company contact, never an SMS): the link is the account."""
    if not email:
        return []
    return [Recipient(kind, principal_id, principal_id, "email", email, language)]


def client_recipients(notice: ClientNotice, card: ClientCard) -> list[Recipient]:
    """The client's account, and the contacts whose notifications are on."""
    if card.erased:
        return []
    by_sms = notice == "abuse_notice"  # the one notice that must not wait for a mailbox
    lang = card.language
    found: list[Recipient] = []
    if card.email:
        found.append(Recipient("client", card.client_id, card.client_id, "email", card.email, lang))
    if by_sms and card.phone:
        found.append(Recipient("client", card.client_id, card.client_id, "sms", card.phone, lang))
    for contact in card.contacts:
        if not contact.notifications:
            continue
        cid = contact.contact_id
        if contact.email and not contact.email_generated:
            found.append(Recipient("contact", cid, card.client_id, "email", contact.email, lang))
        if by_sms and contact.phone:
            found.append(Recipient("contact", cid, card.client_id, "sms", contact.phone, lang))
    return found


# ---------------------------------------------------------------- what


@dataclass(frozen=True)
class Template:
    subject: str
    body: str
    sms: str = ""


TEMPLATES: dict[NoticeKind, dict[Language, Template]] = {
    "new_ticket": {
        "en": Template(
            "New ticket %ticket_ref% in %department%",
            "Hello %staff_name%,\n\nA new ticket %ticket_ref% is waiting in %department%.\n",
            "New ticket %ticket_ref% in %department%",
        ),
        "ru": Template(
            "Новый запрос %ticket_ref% в отделе %department%",
            "Здравствуйте, %staff_name%!\n\nНовый запрос %ticket_ref% ждёт в отделе "
            "%department%.\n",
            "Новый запрос %ticket_ref%: %department%",
        ),
    },
    "client_reply": {
        "en": Template(
            "Client reply on ticket %ticket_ref%",
            "Hello %staff_name%,\n\n%client_person% replied on your ticket %ticket_ref%.\n",
            "Client reply on ticket %ticket_ref%",
        ),
        "ru": Template(
            "Ответ клиента в запросе %ticket_ref%",
            "Здравствуйте, %staff_name%!\n\n%client_person% ответил в вашем запросе "
            "%ticket_ref%.\n",
            "Ответ клиента: запрос %ticket_ref%",
        ),
    },
    "ticket_transferred": {
        "en": Template(
            "Ticket %ticket_ref% was transferred to you",
            "Hello %staff_name%,\n\n%admin_name% transferred ticket %ticket_ref% to you.\n",
            "Ticket %ticket_ref% is yours now",
        ),
        "ru": Template(
            "Вам передан запрос %ticket_ref%",
            "Здравствуйте, %staff_name%!\n\n%admin_name% передал вам запрос %ticket_ref%.\n",
            "Вам передан запрос %ticket_ref%",
        ),
    },
    "deadline_near": {
        "en": Template(
            "Response due soon: ticket %ticket_ref%",
            "Hello %staff_name%,\n\nThe expected response time of ticket %ticket_ref% in "
            "%department% runs out at %deadline%.\n",
            "Ticket %ticket_ref%: response due %deadline%",
        ),
        "ru": Template(
            "Скоро истекает срок ответа: запрос %ticket_ref%",
            "Здравствуйте, %staff_name%!\n\nСрок ответа на запрос %ticket_ref% в отделе "
            "%department% истекает %deadline%.\n",
            "Запрос %ticket_ref%: ответить до %deadline%",
        ),
    },
    "staff_reply": {
        "en": Template(
            "Re: [%ticket_ref%] %ticket_subject%",
            "Dear %client_person%,\n\n%admin_name% replied to your ticket %ticket_ref%:\n\n"
            "%message%\n\n-- \nReply to this e-mail to answer, or sign in to your account.\n",
        ),
        "ru": Template(
            "Re: [%ticket_ref%] %ticket_subject%",
            "Уважаемый(ая) %client_person%!\n\n%admin_name% ответил(а) в вашем запросе "
            "%ticket_ref%:\n\n%message%\n\n-- \nЧтобы ответить, ответьте на это письмо "
            "или войдите в личный кабинет.\n",
        ),
    },
    "client_message": {
        "en": Template(
            "%message_subject%",
            "%message_text%\n\n-- \n%admin_name%\nReply to this e-mail to answer.\n",
        ),
        "ru": Template(
            "%message_subject%",
            "%message_text%\n\n-- \n%admin_name%\nЧтобы ответить, ответьте на это письмо.\n",
        ),
    },
    "abuse_notice": {
        "en": Template(
            "Abuse notice: %message_subject% (respond by %deadline%)",
            "Dear %client_person%,\n\nWe received an abuse complaint about your services:\n\n"
            "%message_text%\n\nPlease respond by %deadline%. Without an answer by then, "
            "%action%.\n\n-- \n%admin_name%\nReply to this e-mail to answer.\n",
            "Abuse notice: respond by %deadline%, see your e-mail",
        ),
        "ru": Template(
            "Жалоба на нарушение: %message_subject% (ответьте до %deadline%)",
            "Уважаемый(ая) %client_person%!\n\nНа ваши услуги поступила жалоба:\n\n"
            "%message_text%\n\nОтветьте до %deadline%. Если ответа не будет, %action%.\n\n"
            "-- \n%admin_name%\nЧтобы ответить, ответьте на это письмо.\n",
            "Жалоба: ответьте до %deadline%, подробности в письме",
        ),
    },
    "rating_request": {
        "en": Template(
            "Re: [%ticket_ref%] %ticket_subject%",
            "Dear %client_person%,\n\nPlease rate our answer to your ticket %ticket_ref%:\n"
            "%rating_link%\n\nThe link works once, without signing in.\n",
        ),
        "ru": Template(
            "Re: [%ticket_ref%] %ticket_subject%",
            "Уважаемый(ая) %client_person%!\n\nПожалуйста, оцените наш ответ на запрос "
            "%ticket_ref%:\n%rating_link%\n\nСсылка действует один раз, без входа.\n",
        ),
    },
    "password_reset": {
        "en": Template(
            "Reset your password",
            "Hello,\n\nSomeone (we hope you) asked to reset the password of your account. "
            "To choose a new one, open this link:\n%reset_link%\n\nIt works once and "
            "expires soon. If it was not you, ignore this mail: your password stays.\n",
        ),
        "ru": Template(
            "Восстановление пароля",
            "Здравствуйте!\n\nКто-то (надеемся, вы) попросил сменить пароль вашей учётной "
            "записи. Чтобы выбрать новый, откройте ссылку:\n%reset_link%\n\nОна действует "
            "один раз и недолго. Если это были не вы, не отвечайте: пароль останется прежним.\n",
        ),
    },
    "transfer_notice": {
        "en": Template(
            "Re: [%ticket_ref%] %ticket_subject%",
            "Dear %client_person%,\n\nYour ticket %ticket_ref% was passed to %department%.\n",
        ),
        "ru": Template(
            "Re: [%ticket_ref%] %ticket_subject%",
            "Уважаемый(ая) %client_person%!\n\nВаш запрос %ticket_ref% передан в отдел "
            "%department%.\n",
        ),
    },
}

ACTIONS: dict[Language, dict[str, str]] = {
    "en": {
        "suspend_services": "your services will be suspended",
        "move_to_active": "the case goes to our abuse team for action",
    },
    "ru": {
        "suspend_services": "ваши услуги будут приостановлены",
        "move_to_active": "дело будет передано в отдел по работе с нарушениями",
    },
}
"""What happens when an abuse notice gets no reaction, in the recipient's words."""


def ticket_ref(number: object, ticket_id: str) -> str:
    """How people name a ticket: ``#1042``, or its id before tickets had numbers."""
    return f"#{number}" if isinstance(number, int) else f"#{ticket_id}"


_MACRO = re.compile(r"%([a-z_]+)%")


def fill(text: str, macros: Mapping[str, str]) -> str:
    """``%name%`` replaced by its value; an unknown macro is left as written."""
    return _MACRO.sub(lambda m: macros.get(m.group(1), m.group(0)), text)


@dataclass(frozen=True)
class Macros:
    """Values of the macros, some per language (names)."""

    plain: dict[str, str] = field(default_factory=dict)
    by_language: dict[Language, dict[str, str]] = field(default_factory=dict)

    def for_language(self, language: Language) -> dict[str, str]:
        return {**self.plain, **self.by_language.get(language, {})}


def render(
    kind: NoticeKind,
    recipient: Recipient,
    macros: Mapping[str, str],
    conversation: Conversation = Conversation(),
) -> Notice:
    """The notice's subject and body (an SMS: one short line) in the recipient's language.

    A subject is one line: line breaks a filled-in value brought are spaces there.
    """
    template = TEMPLATES[kind][recipient.language]
    subject = " ".join(fill(template.subject, macros).split())
    body = fill(template.sms or template.subject, macros)
    if recipient.channel == "email":
        body = fill(template.body, macros)
    return Notice(kind, recipient, subject, body, conversation)
