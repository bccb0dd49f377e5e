"""The mail gateway: real SMTP into the tickets service's gateway, with the real identity,
departments, clients and tickets services on PostgreSQL and the broker (the stack of
``test_tickets``). A mail opens a ticket in the department of its address for the client
who sent it, a reply continues it, machines' mail does neither, the same mail twice is
one message, and refused mail is answered with the reason and leaves nothing behind.
An unknown sender's mail opens a ticket from a contact that only staff see until it is
linked to a client; with ``unknown_senders`` = reject it is answered by a notice mail
(a real SMTP server the test runs) and accepted."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import uuid
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import func, select

from devtools.devbroker import free_port
from services.tickets.adapters.mail_imap import ImapFetcher, ImapMailbox
from services.tickets.adapters.mail_inbound import InboundServer
from services.tickets.adapters.mail_notice import SmtpNotices
from services.tickets.app.mail_gateway import NAMESPACE, MailGateway, inbound_mails
from services.tickets.app.senders import RememberedSenders
from services.tickets.copies import support
from services.tickets.projections.queue import ticket_entries, tickets
from shared.http.internal import issue_service_token
from tests.http_util import eventually
from tests.integration.test_tickets import (
    Stack,
    client,
    department,
    open_ticket,
    project,
    seen_ids,
    stack,
    staff,
    unique,
    until,
)
from tests.support.dovecot import dovecot
from tests.support.keys import service_key

__all__ = ["stack"]

PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


@contextlib.asynccontextmanager
async def smtp_gateway(stack: Stack) -> AsyncIterator[int]:
    """The service's own gateway behind a real SMTP server on a free port."""
    gateway: MailGateway = stack.tickets_app.state.runtime.composed.mail_gateway
    server = InboundServer(gateway, "127.0.0.1", free_port())
    task = asyncio.create_task(server.run())
    await asyncio.wait_for(server.serving.wait(), 10)
    try:
        yield server.port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def mail(
    sender: str,
    to: str,
    subject: str,
    text: str,
    *,
    message_id: str | None = None,
    files: dict[str, bytes] | None = None,
    **headers: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id or f"<{uuid.uuid4()}@client.example.com>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    for name, data in (files or {}).items():
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return message


async def send(port: int, message: EmailMessage, mail_from: str | None = None) -> str:
    """The gateway's answer: "250 ..." or the refusal's code and text."""
    try:
        await aiosmtplib.send(
            message,
            hostname="127.0.0.1",
            port=port,
            sender=mail_from if mail_from is not None else str(message["From"]),
            timeout=30,
        )
    except aiosmtplib.SMTPResponseException as refused:
        return f"{refused.code} {refused.message}"
    except aiosmtplib.SMTPRecipientsRefused as refused:
        return str(refused)
    return "250"


async def desk_with_address(stack: Stack, project_id: str) -> tuple[str, str]:
    address = f"{unique('support')}@desk.example.com"
    created = await stack.departments.post(
        "/departments",
        json={
            "name": {"en": unique("Mail desk")},
            "support": {"enabled": True, "providers": [project_id], "inbound_email": address},
        },
        headers=stack.admin,
    )
    assert created.status_code == 201, created.text
    department_id: str = created.json()["id"]
    await until(
        stack,
        lambda conn: support.openings_by_address(conn, [((address,), "")]),
        lambda found: found[0][0] == department_id,
    )
    return department_id, address


async def email_of(stack: Stack, client_id: str) -> str:
    answer = await eventually(
        lambda: stack.clients.get(f"/clients/{client_id}", headers=stack.admin),
        lambda r: r.status_code == 200,
    )
    email: str = answer.json()["email"]
    return email


async def tickets_of(stack: Stack, client_id: str) -> list[Any]:
    async with stack.db.engine.connect() as conn:
        return list(
            await conn.execute(
                tickets.select()
                .where(tickets.c.client_id == client_id)
                .order_by(tickets.c.opened_at)
            )
        )


async def recorded(stack: Stack, message_id: str) -> Any:
    async with stack.db.engine.connect() as conn:
        return (
            await conn.execute(
                inbound_mails.select().where(inbound_mails.c.message_id == message_id)
            )
        ).first()


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_mail_opens_a_ticket_and_replies_by_mail_continue_it(stack: Stack) -> None:
    main = await project(stack)
    desk, address = await desk_with_address(stack, main)
    client_id, customer = await client(stack, "mailing", main)
    email = await email_of(stack, client_id)
    opened_before = counted("mail_tickets_opened_total")
    async with smtp_gateway(stack) as port:
        first = mail(
            f"Client <{email.upper()}>", address, "Site is down", "example.com answers 502",
            files={"error.pdf": PDF},
        )  # fmt: skip
        assert await send(port, first) == "250"
        [row] = await until(stack, lambda conn: tickets_of(stack, client_id), lambda r: len(r) == 1)
        assert row.department_id == desk and row.subject == "Site is down"
        assert row.number is not None and row.origin == "client"
        page = await stack.tickets.get(f"/tickets/{row.ticket_id}", headers=customer)
        [opening] = page.json()["entries"]
        assert opening["body"] == "example.com answers 502"
        [file] = opening["attachments"]
        got = await stack.tickets.get(
            f"/tickets/{row.ticket_id}/attachments/{file['attachment_id']}", headers=customer
        )
        assert got.content == PDF and file["filename"] == "error.pdf"
        assert counted("mail_tickets_opened_total") == opened_before + 1

        # The same mail again (a sender's retry): acknowledged, applied once.
        version = await stack.app.store.stream_version(f"ticket-{row.ticket_id}")
        assert await send(port, first) == "250"
        assert await stack.app.store.stream_version(f"ticket-{row.ticket_id}") == version
        assert len(await tickets_of(stack, client_id)) == 1

        # A reply naming the ticket in its threading headers continues it, quote cut off.
        thread = f"<ticket-{row.ticket_id}@backoffice.localhost>"
        reply = mail(
            email, address, "Re: anything", "Still down.\n\nOn Monday, Support wrote:\n> old",
            In_Reply_To=thread, References=thread,
        )  # fmt: skip
        assert await send(port, reply) == "250"
        assert await send(port, reply) == "250"  # twice: still one message
        # One by the short number in the subject, to another address of ours.
        by_number = mail(email, "other@desk.example.com", f"Re: [#{row.number}] x", "Now up")
        assert await send(port, by_number) == "250"

        async def messages(conn: Any) -> list[str]:
            found = await conn.execute(
                select(ticket_entries.c.body)
                .where(
                    ticket_entries.c.ticket_id == row.ticket_id,
                    ticket_entries.c.type == "message",
                )
                .order_by(ticket_entries.c.version)
            )
            return [body for (body,) in found]

        # The read model follows the store; two messages, in order, are what it must reach.
        bodies = await until(stack, messages, lambda found: len(found) >= 2)
        assert bodies == ["Still down.", "Now up"]
        assert len(await tickets_of(stack, client_id)) == 1

        # A reply to someone else's ticket does not land in it: it opens the sender's own.
        other_id, _ = await client(stack, "other-mailer", main)
        other_email = (await stack.clients.get(f"/clients/{other_id}", headers=stack.admin)).json()[
            "email"
        ]
        intruder = mail(
            other_email, address, f"Re: [#{row.number}]", "let me in", References=thread
        )
        assert await send(port, intruder) == "250"
        [own] = await until(stack, lambda conn: tickets_of(stack, other_id), lambda r: len(r) == 1)
        assert own.ticket_id != row.ticket_id


@pytest.mark.parametrize(
    ("headers", "mail_from", "reason"),
    [
        ({"Auto_Submitted": "auto-replied"}, None, "auto_submitted"),
        ({"Precedence": "bulk"}, None, "bulk_precedence"),
        ({"List_Id": "<news.example.com>"}, None, "list_mail"),
        ({}, "", "bounce"),
    ],
)
async def test_machines_mail_opens_nothing(
    stack: Stack, headers: dict[str, str], mail_from: str | None, reason: str
) -> None:
    main = await project(stack)
    _, address = await desk_with_address(stack, main)
    client_id, _ = await client(stack, "vacation", main)
    email = await email_of(stack, client_id)
    numbering = stack.app.numbering.state.version
    async with smtp_gateway(stack) as port:
        auto = mail(email, address, "Out of office", "I am away")
        for name, value in headers.items():
            auto[name.replace("_", "-")] = value
        assert await send(port, auto, mail_from) == "250"  # never a bounce to a bounce
    seen = await recorded(stack, str(auto["Message-ID"]))
    assert (seen.status, seen.reason) == ("ignored", reason)
    assert stack.app.numbering.state.version == numbering  # no ticket was even begun
    assert await tickets_of(stack, client_id) == []


async def test_refused_mail_is_answered_with_the_reason_and_leaves_nothing(stack: Stack) -> None:
    main = await project(stack)
    _, address = await desk_with_address(stack, main)
    client_id, _ = await client(stack, "refused", main)
    email = await email_of(stack, client_id)
    gateway: MailGateway = stack.tickets_app.state.runtime.composed.mail_gateway
    files_before = await _files(stack)
    numbering = stack.app.numbering.state.version
    gateway.blocked = frozenset({"@spam.example.com"})
    try:
        async with smtp_gateway(stack) as port:
            cases = [
                (mail("x@spam.example.com", address, "Buy", "now"), "blocked_sender"),
                (mail(email, "nowhere@desk.example.com", "Hi", "lost"), "unknown_address"),
                (
                    mail(email, address, "Virus", "see", files={"setup.exe": b"MZ\x90"}),
                    "file_refused",
                ),
            ]
            for message, reason in cases:
                answer = await send(port, message)
                assert answer.startswith("550") and reason in answer, (reason, answer)
                assert REGISTRY.get_sample_value("mail_rejected_total", {"reason": reason})
            broken = (
                b"From: " + email.encode() + b"\r\nTo: " + address.encode() + b"\r\n"
                b"Subject: broken\r\nMessage-ID: <broken@x>\r\nMIME-Version: 1.0\r\n"
                b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
                b"--b1\r\nContent-Type: text/plain\r\n\r\nno closing boundary\r\n"
            )
            try:
                await aiosmtplib.send(
                    broken, hostname="127.0.0.1", port=port, sender=email, recipients=[address]
                )
                answer = "250"
            except aiosmtplib.SMTPResponseException as refused:
                answer = f"{refused.code} {refused.message}"
            assert answer.startswith("550") and "broken_mime" in answer, answer
    finally:
        gateway.blocked = frozenset()
    assert await tickets_of(stack, client_id) == []
    assert await _files(stack) == files_before  # the refused file was never kept
    assert stack.app.numbering.state.version == numbering


async def _files(stack: Stack) -> int:
    assert stack.app.files is not None
    async with stack.db.engine.connect() as conn:
        found = await conn.execute(select(func.count()).select_from(stack.app.files.table))
        return int(found.scalar() or 0)


async def test_mail_fetched_from_an_imap_mailbox_becomes_a_ticket_once(stack: Stack) -> None:
    main = await project(stack)
    desk, address = await desk_with_address(stack, main)
    client_id, _ = await client(stack, "imap", main)
    email = await email_of(stack, client_id)
    gateway: MailGateway = stack.tickets_app.state.runtime.composed.mail_gateway
    with dovecot(user_name=address) as imap:
        mailbox = ImapMailbox(
            host=imap.host, port=imap.port, ssl=False, user=imap.user,
            password=SecretStr(imap.password), address=address,
        )  # fmt: skip
        fetcher = ImapFetcher(gateway, mailbox, poll_seconds=60)
        request = mail(email, address, "Backup failed", "Last night's backup failed")
        unknown = mail("stranger@unknown.example.com", address, "Hello", "anyone?")

        def deliver(*messages: EmailMessage) -> None:
            connection = imaplib.IMAP4(imap.host, imap.port)
            connection.login(imap.user, imap.password)
            for message in messages:
                connection.append("INBOX", None, None, message.as_bytes())
            connection.logout()

        def left() -> int:
            connection = imaplib.IMAP4(imap.host, imap.port)
            connection.login(imap.user, imap.password)
            connection.select("INBOX")
            _, found = connection.uid("search", None, "ALL")  # type: ignore[arg-type]
            connection.logout()
            return len(found[0].split()) if found and found[0] else 0

        await asyncio.to_thread(deliver, request, unknown)
        assert await fetcher.fetch_once() == 2  # both answered for good: taken from the box
        assert await asyncio.to_thread(left) == 0
        [row] = await until(stack, lambda conn: tickets_of(stack, client_id), lambda r: len(r) == 1)
        assert (row.department_id, row.subject) == (desk, "Backup failed")
        assert (await recorded(stack, str(unknown["Message-ID"]))).status == "opened"  # a contact

        # The provider's server hands the same mail over again: still one ticket.
        await asyncio.to_thread(deliver, request)
        assert await fetcher.fetch_once() == 1
        version = await stack.app.store.stream_version(f"ticket-{row.ticket_id}")
        assert version == 1 and len(await tickets_of(stack, client_id)) == 1


async def test_an_unknown_senders_mail_reaches_the_queue_and_a_link_makes_it_a_clients(
    stack: Stack,
) -> None:
    """The visibility matrix of a ticket from a contact, before and after the link."""
    main = await project(stack)
    desk, address = await desk_with_address(stack, main)
    elsewhere = await department(stack, "Elsewhere", providers=[main])
    alice_id, alice = await client(stack, "alice-mail", main)
    bob_id, _ = await client(stack, "bob-mail", main)
    _, desk_staff = await staff(
        stack, "desk", ["tickets.view", "tickets.reply", "tickets.transfer"], [desk]
    )
    _, replier = await staff(stack, "replier", ["tickets.view", "tickets.reply"], [desk])
    _, other_staff = await staff(stack, "other", ["tickets.view", "tickets.transfer"], [elsewhere])
    _, everywhere = await staff(stack, "all", ["tickets.view", "tickets.all_departments"])
    stranger = f"{unique('stranger')}@elsewhere.example.com"
    first = mail(f"Jane Stranger <{stranger}>", address, "Domain transfer", "Please move it")
    async with smtp_gateway(stack) as port:
        assert await send(port, first) == "250"
        seen = await recorded(stack, str(first["Message-ID"]))
        assert seen.status == "opened", seen
        ticket_id = seen.ticket_id
        row = await until(
            stack,
            lambda conn: _ticket_row(conn, ticket_id),
            lambda r: r is not None,
        )
        assert (row.origin, row.department_id, row.subject) == ("contact", desk, "Domain transfer")
        assert row.client_id.startswith("contact-") and row.number is not None
        # The contact's address and name are sealed in the log (the contact's own key).
        [opened] = await stack.app.store.read_stream(f"ticket-{ticket_id}")
        assert opened.data["contact_email"].startswith("sealed:v1:")
        assert stranger not in str(opened.data) and "Jane" not in str(opened.data)

        page = await stack.tickets.get(f"/tickets/{ticket_id}", headers=desk_staff)
        assert page.status_code == 200, page.text
        assert page.json()["contact"]["email"] == stranger
        assert page.json()["contact"]["name"] == "Jane Stranger"
        assert page.json()["entries"][0]["body"] == "Please move it"

        async def matrix(position: int, alice_sees: bool) -> None:
            for who, headers, expected in (
                ("desk", desk_staff, True),
                ("all departments", everywhere, True),
                ("other department", other_staff, False),
                ("alice", alice, alice_sees),
            ):
                answer = await stack.tickets.get(
                    f"/tickets/{ticket_id}", params={"min_position": position}, headers=headers
                )
                assert answer.status_code == (200 if expected else 404), (who, answer.text)
                assert (ticket_id in await seen_ids(stack, headers, position)) == expected, who

        await matrix(0, alice_sees=False)

        # The contact answers by mail in the thread: the contact's ticket goes on.
        thread = f"<ticket-{ticket_id}@backoffice.localhost>"
        answer = mail(stranger, address, "Re: Domain transfer", "Any news?", References=thread)
        assert await send(port, answer) == "250"
        assert (await recorded(stack, str(answer["Message-ID"]))).ticket_id == ticket_id
        # Someone else naming that ticket does not get into it: a contact ticket of their own.
        intruder = mail("intruder@elsewhere.example.com", address, "Re: x", "hi", References=thread)
        assert await send(port, intruder) == "250"
        assert (await recorded(stack, str(intruder["Message-ID"]))).ticket_id != ticket_id

        # Staff reply; the notifier learns where it goes (the contact) from the internal API.
        replied = await stack.tickets.post(
            f"/tickets/{ticket_id}/messages", json={"body": "Done"}, headers=desk_staff
        )
        assert replied.status_code == 201, replied.text
        token = issue_service_token(service_key("notifier"), "notifier")
        service = {"Authorization": f"Bearer {token}"}
        internal = await stack.tickets.get(
            f"/internal/tickets/{ticket_id}/messages/{replied.json()['message_id']}",
            params={"min_position": replied.json()["position"]},
            headers=service,
        )
        assert internal.status_code == 200, internal.text
        assert internal.json()["contact"]["email"] == stranger

    # Linking: the right, the client's existence, the ticket's kind, once.
    path = f"/tickets/{ticket_id}/client"
    denied = await stack.tickets.post(path, json={"client_id": alice_id}, headers=replier)
    assert denied.status_code == 403, denied.text
    hidden = await stack.tickets.post(path, json={"client_id": alice_id}, headers=other_staff)
    assert hidden.status_code == 404, hidden.text
    unknown = await stack.tickets.post(path, json={"client_id": "no-such"}, headers=desk_staff)
    assert unknown.status_code == 422 and "client_id" in unknown.text, unknown.text
    empty = await stack.tickets.post(path, json={}, headers=desk_staff)
    assert empty.status_code == 422 and "client_id" in empty.text, empty.text
    linked = await stack.tickets.post(path, json={"client_id": alice_id}, headers=desk_staff)
    assert linked.status_code == 200, linked.text
    again = await stack.tickets.post(path, json={"client_id": alice_id}, headers=desk_staff)
    assert again.status_code == 200 and again.json()["version"] == linked.json()["version"]
    other = await stack.tickets.post(path, json={"client_id": bob_id}, headers=desk_staff)
    assert other.status_code == 409 and "already_linked" in other.text, other.text
    own = await open_ticket(stack, alice, desk)
    not_contact = await stack.tickets.post(
        f"/tickets/{own['id']}/client", json={"client_id": alice_id}, headers=desk_staff
    )
    assert not_contact.status_code == 409 and "not_from_a_contact" in not_contact.text

    position = linked.json()["position"]
    await matrix(position, alice_sees=True)
    mine = await stack.tickets.get(
        f"/tickets/{ticket_id}", params={"min_position": position}, headers=alice
    )
    body = mine.json()
    assert body["client_id"] == alice_id and body["contact"] is None  # who wrote: staff only
    assert [e["body"] for e in body["entries"] if e["type"] in ("opened", "message")] == [
        "Please move it", "Any news?", "Done",
    ]  # fmt: skip
    assert "linked_to_client" not in {e["type"] for e in body["entries"]}
    assert alice_id in {t["client_id"] for t in (await stack.tickets.get(
        "/tickets", params={"client_id": alice_id, "min_position": position}, headers=desk_staff
    )).json()}  # fmt: skip
    # The link is the client's now: a reply by the notifier goes to the client, not the contact.
    later = await stack.tickets.post(
        f"/tickets/{ticket_id}/messages", json={"body": "And more"}, headers=desk_staff
    )
    internal = await stack.tickets.get(
        f"/internal/tickets/{ticket_id}/messages/{later.json()['message_id']}",
        params={"min_position": later.json()["position"]},
        headers=service,
    )
    assert internal.json()["contact"] is None and internal.json()["client_id"] == alice_id

    # Erasing Alice forgets the contact too: the ticket's first texts are the contact's.
    erased = await stack.clients.delete(f"/clients/{alice_id}", headers=stack.admin)
    assert erased.status_code == 200, erased.text
    after = await eventually(
        lambda: stack.tickets.get(f"/tickets/{ticket_id}", headers=desk_staff),
        lambda r: r.json()["subject"] is None,
    )
    assert after.json()["contact"]["email"] is None and after.json()["contact"]["name"] is None
    assert stranger not in after.text and "Please move it" not in after.text
    ticket = await stack.app.load(ticket_id)
    assert ticket.contact_email is None and ticket.subject is None
    assert all(c.details.get("body") is None for c in ticket.history)


async def _ticket_row(conn: Any, ticket_id: str) -> Any:
    return (await conn.execute(tickets.select().where(tickets.c.ticket_id == ticket_id))).first()


class _Sink:
    """A real SMTP server (aiosmtpd) that keeps what it is given."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        assert isinstance(content, bytes)
        self.received.append((envelope.mail_from or "", list(envelope.rcpt_tos), content))
        self.arrived.set()
        return "250 OK"


async def test_the_reject_setting_answers_an_unknown_sender_with_a_notice(stack: Stack) -> None:
    main = await project(stack)
    _, address = await desk_with_address(stack, main)
    gateway: MailGateway = stack.tickets_app.state.runtime.composed.mail_gateway
    sink = _Sink()
    loop = asyncio.get_running_loop()
    sink_port = free_port()
    server = await loop.create_server(lambda: SMTP(sink, loop=loop), "127.0.0.1", sink_port)
    before, gateway.notices = (
        gateway.notices,
        SmtpNotices("127.0.0.1", sink_port, f"Support <{address}>"),
    )
    # A contact's ticket from before the setting changed.
    earlier_contact = f"{unique('earlier')}@elsewhere.example.com"
    earlier = mail(earlier_contact, address, "Earlier", "Opened while contacts were taken")
    async with smtp_gateway(stack) as port:
        assert await send(port, earlier) == "250"
    earlier_ticket = (await recorded(stack, str(earlier["Message-ID"]))).ticket_id
    assert earlier_ticket is not None
    settings = await stack.tickets.put(
        "/support/settings", json={"unknown_senders": "reject"}, headers=stack.admin
    )
    assert settings.status_code == 200, settings.text
    numbering = stack.app.numbering.state.version
    try:
        shown = await stack.tickets.get("/support/settings", headers=stack.admin)
        assert shown.json()["unknown_senders"] == "reject"
        bad = await stack.tickets.put(
            "/support/settings", json={"unknown_senders": "maybe"}, headers=stack.admin
        )
        assert bad.status_code == 422 and "unknown_senders" in bad.text, bad.text
        stranger = f"{unique('stranger')}@elsewhere.example.com"
        request = mail(stranger, address, "Buy hosting", "How much?")
        async with smtp_gateway(stack) as port:
            assert await send(port, request) == "250"  # accepted: no bounce to bounce back
            await asyncio.wait_for(sink.arrived.wait(), 10)  # sent before the 250, in fact
            [(envelope_from, to, raw)] = sink.received
            assert envelope_from in ("", "<>") and to == [stranger]  # the null return path
            notice = message_from_bytes(raw, policy=policy.default)
            assert notice["Auto-Submitted"] == "auto-replied"
            assert notice["In-Reply-To"] == request["Message-ID"]
            assert str(notice["Subject"]) == "Not accepted: Buy hosting"
            assert stranger in str(notice.get_body(("plain",)).get_content())  # type: ignore[union-attr]
            # The same mail again (a retry): recognised, no second notice.
            assert await send(port, request) == "250"
            # The earlier contact still answers in its own ticket.
            thread = f"<ticket-{earlier_ticket}@backoffice.localhost>"
            follow_up = mail(
                earlier_contact, address, "Re: Earlier", "Still here", References=thread
            )
            assert await send(port, follow_up) == "250"
            continued = await recorded(stack, str(follow_up["Message-ID"]))
            assert (continued.status, continued.ticket_id) == ("continued", earlier_ticket)
            # An unknown machine's mail (a vacation answer to our notice, say) gets none:
            # the notice is sent before the 250, so its count is final here.
            vacation = mail(stranger, address, "Away", "I am away", Auto_Submitted="auto-replied")
            assert await send(port, vacation) == "250"
            assert (await recorded(stack, str(vacation["Message-ID"]))).status == "ignored"
        seen = await recorded(stack, str(request["Message-ID"]))
        assert (seen.status, seen.reason, seen.ticket_id) == ("declined", "unknown_sender", None)
        assert len(sink.received) == 1
        assert stack.app.numbering.state.version == numbering  # no ticket was begun
    finally:
        gateway.notices = before
        server.close()
        reset = await stack.tickets.put(
            "/support/settings", json={"unknown_senders": "open"}, headers=stack.admin
        )
        assert reset.status_code == 200, reset.text


async def test_a_remembered_sender_is_forgotten_when_the_client_changes_the_address(
    stack: Stack,
) -> None:
    """The gateway keeps who writes from an address (``app.senders``); the client's
    ``ClientChanged`` (e-mail) ends it, long before the answer's own time is up."""
    main = await project(stack)
    _, address = await desk_with_address(stack, main)
    client_id, _ = await client(stack, "moving", main)
    old = await email_of(stack, client_id)
    gateway: MailGateway = stack.tickets_app.state.runtime.composed.mail_gateway
    senders = gateway.senders
    assert isinstance(senders, RememberedSenders)
    seconds, senders.seconds = senders.seconds, 3600.0  # only the fact can end it here
    try:
        async with smtp_gateway(stack) as port:

            async def owner(sender: str) -> str | None:
                sent = mail(sender, address, "Who am I", "a mail")
                assert await send(port, sent) == "250"
                seen = await recorded(stack, str(sent["Message-ID"]))
                assert seen.status == "opened", seen
                ticket = await gateway.tickets.load(seen.ticket_id)
                return None if ticket.contact_id is not None else ticket.client_id

            assert await owner(old) == client_id  # and now kept
            new = f"{unique('moved')}@example.com"
            changed = await stack.clients.patch(
                f"/clients/{client_id}", json={"email": new}, headers=stack.admin
            )
            assert changed.status_code == 200, changed.text
            # The old address belongs to nobody once the fact is here: a contact's ticket.
            await eventually(lambda: owner(old), lambda found: found is None)
            assert await owner(new) == client_id
    finally:
        senders.seconds = seconds


async def test_mails_arriving_together_share_a_group_and_each_gets_its_own_answer(
    stack: Stack,
) -> None:
    """Mails that wait together while a round runs are handled in the next one (one
    INSERT records them, one UPDATE their outcomes): the good ones open their tickets,
    the one the department does not serve is answered 550 and leaves no ticket, and the
    same mail twice in one group is one ticket."""
    main, elsewhere = await project(stack), await project(stack)
    desk, address = await desk_with_address(stack, main)
    senders = [await client(stack, f"group{i}", main) for i in range(3)]
    stranger_id, _ = await client(stack, "group-stranger", elsewhere)  # not served by the desk
    emails = [await email_of(stack, client_id) for client_id, _ in senders]
    good = [
        mail(email, address, f"Together {i}", "one of a group") for i, email in enumerate(emails)
    ]
    refused = mail(await email_of(stack, stranger_id), address, "Not here", "wrong desk")
    sent = [*good, refused, good[0]]  # the first mail twice
    gateway: MailGateway = stack.tickets_app.state.runtime.composed.mail_gateway
    handled = gateway._handled
    work, gate, rounds = handled._work, asyncio.Event(), []

    async def held(group: list[Any]) -> Any:  # each round waits for the test
        rounds.append(len(group))
        await gate.wait()
        return await work(group)

    handled._work = held
    try:
        async with smtp_gateway(stack) as port:
            stranger = await email_of(stack, stranger_id)
            plug = asyncio.create_task(send(port, mail(stranger, address, "First", "alone")))
            await eventually(lambda: _answer(rounds), lambda r: r == [1])  # a round runs
            answers = asyncio.gather(*(send(port, m) for m in sent))
            await eventually(lambda: _waiting(handled), lambda n: n == len(sent))
            gate.set()
            assert (await asyncio.wait_for(plug, 60)).startswith("550")
            first, second, third, no, again = await asyncio.wait_for(answers, 60)
    finally:
        gate.set()
        handled._work = work
    assert rounds == [1, len(sent)]  # the five in one round
    assert [first, second, third, again] == ["250"] * 4
    assert no.startswith("550") and "not_accepted" in no, no
    opened = []
    for (client_id, _), message in zip(senders, good, strict=True):
        [row] = await until(
            stack, lambda conn, c=client_id: tickets_of(stack, c), lambda r: len(r) == 1
        )
        assert row.department_id == desk and row.subject == message["Subject"]
        seen = await recorded(stack, str(message["Message-ID"]))
        assert (seen.status, seen.ticket_id) == ("opened", row.ticket_id)
        opened.append(row.number)
    assert len(set(opened)) == 3
    # Nothing of the refused mail's ticket was written (the store decides, before the 550).
    never = uuid.uuid5(NAMESPACE, f"ticket:{refused['Message-ID']}")
    assert await stack.app.store.stream_version(f"ticket-{never}") == 0
    seen = await recorded(stack, str(refused["Message-ID"]))
    assert seen.status == "rejected" and seen.ticket_id is None


async def _waiting(grouped: Any) -> int:
    return len(grouped._waiting)


async def _answer(value: Any) -> Any:
    return list(value)
