"""The notifier over real HTTP with the real identity, departments, clients and tickets
services, PostgreSQL, the broker, an aiosmtpd SMTP server and an HTTP SMS gateway.

One stack serves the module; the notifier itself is started and stopped by the
tests that need it down. Every test makes its own departments, staff and clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import orjson
import pytest
from fastapi import FastAPI

from devtools.devbroker import free_port
from services.clients.service import SPEC as CLIENTS
from services.departments.domain.defaults import TECHNICAL_SUPPORT
from services.departments.service import SPEC as DEPARTMENTS
from services.identity.service import SPEC as IDENTITY
from services.notifier.app.notifier import Notifier
from services.notifier.copies import directory
from services.notifier.service import SPEC as NOTIFIER
from services.tickets.adapters.mail_inbound import InboundServer
from services.tickets.copies import support
from services.tickets.service import SPEC as TICKETS
from shared.runtime.service import create_app
from shared.runtime.settings import ServiceSettings
from tests.conftest import fresh_database
from tests.http_util import eventually, serving
from tests.support.mail_and_sms import MailBox, SmsGateway, mailbox, sms_gateway

ADMIN_PASSWORD = "admin-password-for-tests"
IP = "203.0.113.7"
Headers = dict[str, str]
RETRY_SECONDS = 0.5
ATTEMPTS = 4  # 0.5 + 1 + 2 s of back-off before a notice fails


@dataclass
class Stack:
    identity: httpx.AsyncClient
    departments: httpx.AsyncClient
    clients: httpx.AsyncClient
    tickets: httpx.AsyncClient
    notifier: httpx.AsyncClient
    admin: Headers
    mail: MailBox
    sms: SmsGateway
    restart: Callable[[], contextlib.AbstractAsyncContextManager[None]]
    apps: dict[str, FastAPI]

    @property
    def app(self) -> Notifier:
        notifier: Notifier = self.apps["notifier"].state.runtime.composed
        return notifier


def _settings(db_url: str, bootstrap: str, prefix: str, tmp: Path) -> ServiceSettings:
    return ServiceSettings(
        event_store_url=db_url,
        read_model_url=db_url,
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        trusted_proxies=["127.0.0.1/32"],
        var_dir=str(tmp),
    )


class SwitchableClient(httpx.AsyncClient):
    """An HTTP client whose base URL follows the notifier across restarts."""


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    tmp = tmp_path_factory.mktemp("notifier")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ADMIN_PASSWORD", ADMIN_PASSWORD)
        async with (
            fresh_database() as identity_db,
            fresh_database() as departments_db,
            fresh_database() as clients_db,
            fresh_database() as tickets_db,
            fresh_database() as notifier_db,
            mailbox() as mail,
            sms_gateway() as sms,
        ):
            env.setenv("SMTP_HOST", "127.0.0.1")
            env.setenv("SMTP_PORT", str(mail.port))
            env.setenv("SMS_GATEWAY_URL", sms.url)
            env.setenv("DELIVERY_RETRY_SECONDS", str(RETRY_SECONDS))
            env.setenv("DELIVERY_ATTEMPTS", str(ATTEMPTS))
            # Longer than the 4 h a department promises: every warning is due at once.
            env.setenv("SLA_WARNING_MINUTES", str(5 * 60))
            identity_app = create_app(
                IDENTITY, _settings(identity_db, kafka_bootstrap, prefix, tmp / "i")
            )
            async with serving(identity_app) as identity_base:
                env.setenv("IDENTITY_URL", identity_base)
                apps = {
                    spec.name: create_app(
                        spec, _settings(url, kafka_bootstrap, prefix, tmp / spec.name)
                    )
                    for spec, url in (
                        (DEPARTMENTS, departments_db),
                        (CLIENTS, clients_db),
                        (TICKETS, tickets_db),
                    )
                }
                async with (
                    serving(apps["departments"]) as departments_base,
                    serving(apps["clients"]) as clients_base,
                ):
                    env.setenv("CLIENTS_URL", clients_base)
                    async with (
                        serving(apps["tickets"]) as tickets_base,
                        httpx.AsyncClient(base_url=identity_base, timeout=60) as identity,
                        httpx.AsyncClient(base_url=departments_base, timeout=60) as departments,
                        httpx.AsyncClient(base_url=clients_base, timeout=60) as clients,
                        httpx.AsyncClient(base_url=tickets_base, timeout=60) as tickets,
                        httpx.AsyncClient(timeout=60) as notifier,
                    ):
                        running: list[contextlib.AbstractAsyncContextManager[str]] = []
                        env.setenv("TICKETS_URL", tickets_base)  # replies' texts and files
                        env.setenv("TICKETS_PUBLIC_URL", tickets_base)  # rating links

                        async def start() -> None:
                            apps["notifier"] = create_app(
                                NOTIFIER,
                                _settings(notifier_db, kafka_bootstrap, prefix, tmp / "n"),
                            )
                            serve = serving(apps["notifier"])
                            notifier.base_url = httpx.URL(await serve.__aenter__())
                            running.append(serve)
                            await asyncio.wait_for(
                                apps["notifier"].state.runtime.composed.stream.ready.wait(),
                                60,
                            )

                        async def stop() -> None:
                            await running.pop().__aexit__(None, None, None)

                        @contextlib.asynccontextmanager
                        async def restart() -> AsyncIterator[None]:
                            """The notifier is down inside the block, up again after it."""
                            await stop()
                            try:
                                yield
                            finally:
                                await start()

                        await start()
                        try:
                            admin = await login(identity, "admin", ADMIN_PASSWORD)
                            stack = Stack(
                                identity, departments, clients, tickets, notifier, admin,
                                mail, sms, restart, apps,
                            )  # fmt: skip
                            for service, path in (
                                (tickets, "/tickets"),
                                (departments, "/departments"),
                                (clients, "/projects"),
                                (notifier, "/timers"),
                            ):
                                await eventually(
                                    functools.partial(service.get, path, headers=admin),
                                    lambda r: r.status_code == 200,
                                )
                            narrowed = await departments.patch(
                                f"/departments/{TECHNICAL_SUPPORT.department_id}",
                                json={"support": {"enabled": True, "providers": ["nobody"]}},
                                headers=admin,
                            )
                            assert narrowed.status_code == 200, narrowed.text
                            yield stack
                        finally:
                            while running:
                                await stop()


# ---------------------------------------------------------------- helpers


async def login(identity: httpx.AsyncClient, name: str, password: str) -> Headers:
    answer = await identity.post(
        "/auth/login", json={"login": name, "password": password}, headers={"X-Forwarded-For": IP}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}", "X-Forwarded-For": IP}


def unique(name: str) -> str:
    return f"{name}{uuid.uuid4().hex[:6]}"


async def until(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    started = time.monotonic()
    while True:
        found = check()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return found
        assert time.monotonic() - started < timeout, f"never: {what}"
        await asyncio.sleep(0.05)


async def project(stack: Stack) -> str:
    created = await stack.clients.post(
        "/projects", json={"name": unique("project")}, headers=stack.admin
    )
    assert created.status_code == 201, created.text
    project_id: str = created.json()["id"]
    return project_id


async def department(stack: Stack, name: str, providers: list[str]) -> str:
    body = {
        "name": {"en": unique(name), "ru": f"Отдел {name}"},
        "support": {"enabled": True, "providers": providers},
    }
    created = await stack.departments.post("/departments", json=body, headers=stack.admin)
    assert created.status_code == 201, created.text
    department_id: str = created.json()["id"]
    await eventually(  # the tickets service offers it once it knows it
        lambda: stack.tickets.get("/support/departments", headers=stack.admin),
        lambda r: r.status_code == 200,
    )
    return department_id


@dataclass
class Person:
    id: str
    headers: Headers
    email: str
    phone: str


async def staff(
    stack: Stack, name: str, rights: list[str], departments: list[str] | None = None
) -> Person:
    login_name = unique(name)
    phone = f"+4930{uuid.uuid4().int % 10**8:08d}"
    body = {
        "login": login_name,
        "password": f"{login_name}-password",
        "full_name": {"en": name.title(), "ru": f"Сотрудник {name}"},
        "email": f"{login_name}@staff.example.com",
        "phone": phone,
        "departments": departments or [],
    }
    created = await eventually(
        lambda: stack.identity.post("/staff", json=body, headers=stack.admin),
        lambda r: r.status_code != 422,
    )
    assert created.status_code == 201, created.text
    staff_id: str = created.json()["id"]
    for right in rights:
        granted = await stack.identity.post(
            f"/staff/{staff_id}/rights", json={"right": right}, headers=stack.admin
        )
        assert granted.status_code in (200, 201), granted.text
    headers = await login(stack.identity, login_name, f"{login_name}-password")
    for name in ("tickets", "notifier"):  # both learn staff and rights from identity.events

        def known(name: str = name) -> bool:
            access = stack.apps[name].state.runtime.access.by_principal.get(staff_id)
            return access is not None and set(rights) <= set(access.rights)

        await until(known, what=f"{name} knows {login_name}")

    async def carded() -> bool:  # the notifier's own directory (its stream processor)
        async with stack.apps["notifier"].state.runtime.db.reading() as conn:
            return bool(await directory.staff(conn, [staff_id]))

    await until(carded, what=f"the notifier has {login_name}'s card")
    return Person(staff_id, headers, str(body["email"]), phone)


async def client(
    stack: Stack, name: str, project_id: str, language: str = "en", phone: str | None = None
) -> Person:
    login_name = unique(name)
    body: dict[str, Any] = {
        "login": login_name,
        "password": f"Passw0rd-{login_name}",
        "email": f"{login_name}@client.example.com",
        "country": "DE",
        "customer_status": "individual",
        "contact_person": f"Person {name}",
        "project_id": project_id,
        "language": language,
    }
    if phone:
        body |= {"phone": phone, "phone_verified": True}
    created = await eventually(
        lambda: stack.clients.post("/clients", json=body, headers=stack.admin),
        lambda r: r.status_code != 422,
    )
    assert created.status_code == 201, created.text
    client_id: str = created.json()["id"]
    headers = await login(stack.identity, login_name, f"Passw0rd-{login_name}")
    await eventually(
        lambda: stack.tickets.get("/tickets", headers=headers), lambda r: r.status_code == 200
    )
    return Person(client_id, headers, body["email"], phone or "")


async def subscribe(
    stack: Stack, person: Person, notices: dict[str, list[str]], **extra: Any
) -> int:
    answer = await stack.notifier.put(
        f"/subscriptions/{person.id}", json={"notices": notices, **extra}, headers=person.headers
    )
    assert answer.status_code == 200, answer.text
    position: int = answer.json()["position"]
    return position


async def open_ticket(stack: Stack, customer: Person, department_id: str) -> dict[str, Any]:
    body = {"department_id": department_id, "subject": "Server down", "body": "Please help"}
    answer = await eventually(
        lambda: stack.tickets.post("/tickets", json=body, headers=customer.headers),
        lambda r: r.status_code != 422,
    )
    assert answer.status_code == 201, answer.text
    opened: dict[str, Any] = answer.json()
    return opened


async def deliveries(stack: Stack, **params: Any) -> list[dict[str, Any]]:
    answer = await stack.notifier.get(
        "/deliveries", params={"limit": 500, **params}, headers=stack.admin
    )
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


# ---------------------------------------------------------------- who gets what


async def test_each_notice_reaches_the_right_people_by_the_right_channel(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Notice desk", [main])
    other = await department(stack, "Other desk", [main])
    agent = await staff(stack, "agent", ["tickets.view", "tickets.reply"], [desk])
    silent = await staff(stack, "silent", ["tickets.view", "tickets.reply"], [desk])
    elsewhere = await staff(stack, "elsewhere", ["tickets.view"], [other])
    router_ = await staff(stack, "router", ["tickets.view", "tickets.transfer"], [desk])
    await subscribe(
        stack,
        agent,
        {
            "new_ticket": ["email", "sms"],
            "client_reply": ["email"],
            "ticket_transferred": ["email"],
        },
    )
    await subscribe(stack, elsewhere, {"new_ticket": ["email", "sms"]})
    position = await subscribe(stack, silent, {"client_reply": ["email"]}, language="ru")
    mine = await stack.notifier.get(
        f"/subscriptions/{silent.id}", params={"min_position": position}, headers=silent.headers
    )
    assert mine.json() == {
        "staff_id": silent.id, "language": "ru", "notices": {"client_reply": ["email"]},
        "version": 1,
    }  # fmt: skip
    customer = await client(stack, "customer", main, language="ru")

    # A new ticket: the subscribed member of the department, by e-mail and SMS.
    opened = await open_ticket(stack, customer, desk)
    ticket_id = opened["id"]
    [mail] = await until(lambda: stack.mail.to(agent.email), what="new ticket mail")
    number = opened["number"]  # the short number, not the UUID
    assert mail.subject == f"New ticket #{number} in {await _name(stack, desk)}"
    assert "Hello Agent," in mail.body
    [text] = await until(lambda: stack.sms.to(agent.phone), what="new ticket SMS")
    assert f"#{number}" in text["text"]

    # Transferred to the agent: a notice to them (and the router's name filled in).
    moved = await stack.tickets.post(
        f"/tickets/{ticket_id}/transfer", json={"staff_id": agent.id}, headers=router_.headers
    )
    assert moved.status_code == 200, moved.text
    transferred = await until(
        lambda: [m for m in stack.mail.to(agent.email) if "transferred" in m.subject],
        what="transfer mail",
    )
    assert "Router transferred ticket" in transferred[0].body

    # The client replies: the assignee hears of it, the other subscriber does not.
    replied = await stack.tickets.post(
        f"/tickets/{ticket_id}/messages", json={"body": "still down"}, headers=customer.headers
    )
    assert replied.status_code == 201, replied.text
    await until(
        lambda: [m for m in stack.mail.to(agent.email) if "Client reply" in m.subject],
        what="client reply mail",
    )

    # Staff reply: the client hears of it, in Russian, with the macros filled.
    answered = await stack.tickets.post(
        f"/tickets/{ticket_id}/messages", json={"body": "Fixed"}, headers=agent.headers
    )
    assert answered.status_code == 201, answered.text
    [reply] = await until(lambda: stack.mail.to(customer.email), what="reply to the client")
    assert reply.subject == f"Re: [#{number}] Server down"
    assert "Person customer" in reply.body and "Сотрудник agent" in reply.body
    assert "Fixed" in reply.body
    assert "%" not in reply.body

    # Nobody else: not the unsubscribed member, not the other department, no SMS to the client.
    await asyncio.sleep(1)
    assert stack.mail.to(silent.email) == []
    assert stack.mail.to(elsewhere.email) == [] and stack.sms.to(elsewhere.phone) == []
    assert [m.subject for m in stack.mail.to(agent.email)].count(mail.subject) == 1
    [new] = [d for d in await deliveries(stack, to=agent.email) if d["kind"] == "new_ticket"]
    log = await deliveries(stack, event_id=new["event_id"])
    assert {(d["channel"], d["to"], d["status"]) for d in log} == {
        ("email", agent.email, "sent"),
        ("sms", agent.phone, "sent"),
    }


async def _name(stack: Stack, department_id: str) -> str:
    answer = await stack.departments.get(f"/departments/{department_id}", headers=stack.admin)
    name: str = answer.json()["name"]["en"]
    return name


async def test_a_contact_with_notifications_off_gets_no_copy(stack: Stack) -> None:
    main = await project(stack)
    customer = await client(stack, "company-member", main)
    company = await stack.clients.post(
        "/companies", json={"name": unique("Acme")}, headers=stack.admin
    )
    assert company.status_code == 201, company.text
    path = f"/companies/{company.json()['id']}"
    joined = await stack.clients.post(
        f"{path}/members", json={"client_id": customer.id}, headers=stack.admin
    )
    assert joined.status_code in (200, 201), joined.text
    on, off = unique("on") + "@contact.example.com", unique("off") + "@contact.example.com"
    for email, notifications in ((on, True), (off, False)):
        added = await stack.clients.post(
            f"{path}/contacts",
            json={"name": "Contact", "email": email, "notifications": notifications},
            headers=stack.admin,
        )
        assert added.status_code == 201, added.text
    await asyncio.sleep(0.5)  # the clients' read model (the notifier asks it) has the contacts
    sent = await stack.clients.post(
        "/clients/messages",
        json={"client_ids": [customer.id], "subject": "Maintenance", "text": "Tonight"},
        headers=stack.admin,
    )
    assert sent.status_code == 201, sent.text
    await until(lambda: stack.mail.to(customer.email) and stack.mail.to(on), what="message mails")
    assert stack.mail.to(customer.email)[0].subject == "Maintenance"
    assert "Tonight" in stack.mail.to(on)[0].body
    await asyncio.sleep(1)
    assert stack.mail.to(off) == []


# ---------------------------------------------------------------- conversations by mail

PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def _attachments(mail: Any) -> dict[str, bytes]:
    return {
        str(part.get_filename()): part.get_content() for part in mail.message.iter_attachments()
    }


async def test_mails_carry_the_conversation_threaded_per_ticket(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Mail desk", [main])
    network = await department(stack, "Network desk", [main])
    agent = await staff(
        stack, "mailer", ["tickets.view", "tickets.reply", "tickets.transfer"], [desk]
    )
    customer = await client(stack, "threaded", main)
    opened = await open_ticket(stack, customer, desk)
    ticket_id, number = opened["id"], opened["number"]

    # A staff reply with a file: its text, the file, the ticket's number and subject.
    uploaded = await stack.tickets.post(
        "/tickets/attachments",
        files={"file": ("diagnosis.pdf", PDF, "application/pdf")},
        headers=agent.headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    answered = await stack.tickets.post(
        f"/tickets/{ticket_id}/messages",
        json={"body": "Nginx was down.\nRestarted it <now>.",
              "attachments": [uploaded.json()["attachment_id"]]},
        headers=agent.headers,
    )  # fmt: skip
    assert answered.status_code == 201, answered.text
    [reply] = await until(lambda: stack.mail.to(customer.email), what="the reply by mail")
    assert reply.subject == f"Re: [#{number}] Server down"
    assert "Nginx was down.\r\nRestarted it <now>." in reply.body  # mail's line breaks
    assert "Person threaded" in reply.body and "Mailer replied" in reply.body
    html = reply.message.get_body(("html",))
    assert html is not None and "Restarted it &lt;now&gt;." in html.get_content()
    assert _attachments(reply) == {"diagnosis.pdf": PDF}
    domain = "backoffice.localhost"
    assert str(reply.message["In-Reply-To"]).strip() == f"<ticket-{ticket_id}@{domain}>"
    assert str(reply.message["References"]).strip() == f"<ticket-{ticket_id}@{domain}>"
    assert reply.message["Message-ID"].endswith(f"@{domain}>")
    assert reply.message["Auto-Submitted"] == "auto-generated"

    # Transferred to another department: the client is told (the settings show 3 notices).
    moved = await stack.tickets.post(
        f"/tickets/{ticket_id}/transfer", json={"department_id": network}, headers=agent.headers
    )
    assert moved.status_code == 200, moved.text
    [notice] = await until(
        lambda: [m for m in stack.mail.to(customer.email) if "was passed to" in m.body],
        what="the transfer notice",
    )
    assert notice.subject == reply.subject
    assert notice.message["References"] == reply.message["References"]
    assert await _name(stack, network) in notice.body

    # A message to the client: its own subject, its text with the macros filled, its file.
    upload = await stack.clients.post(
        "/clients/attachments",
        files={"file": ("terms.pdf", PDF, "application/pdf")},
        headers=stack.admin,
    )
    assert upload.status_code == 201, upload.text
    sent = await stack.clients.post(
        "/clients/messages",
        json={"client_ids": [customer.id], "subject": "New terms for %client_person%",
              "text": "Dear %client_person%, see the attached terms.",
              "attachments": [upload.json()["attachment_id"]]},
        headers=stack.admin,
    )  # fmt: skip
    assert sent.status_code == 201, sent.text
    [message] = await until(
        lambda: [m for m in stack.mail.to(customer.email) if m.subject.startswith("New terms")],
        what="the message by mail",
    )
    assert message.subject == "New terms for Person threaded"
    assert "Dear Person threaded, see the attached terms." in message.body
    assert _attachments(message) == {"terms.pdf": PDF}
    assert message.message["References"] != reply.message["References"]


async def test_a_staff_reply_to_a_contacts_ticket_goes_to_the_contact(stack: Stack) -> None:
    """An unknown sender's mail (real SMTP into the gateway) opens a ticket from a contact;
    the reply by mail goes to the address that wrote, in the ticket's thread."""
    main = await project(stack)
    desk = await department(stack, "Contact desk", [main])
    address = f"{unique('desk')}@desk.example.com"
    patched = await stack.departments.patch(
        f"/departments/{desk}", json={"support": {"inbound_email": address}}, headers=stack.admin
    )
    assert patched.status_code == 200, patched.text
    tickets_runtime = stack.apps["tickets"].state.runtime

    async def routed() -> bool:
        async with tickets_runtime.db.reading() as conn:
            found = await support.openings_by_address(conn, [((address,), "")])
            return found[0][0] == desk

    await until(routed, what="the tickets service routes the address")
    agent = await staff(stack, "contact-agent", ["tickets.view", "tickets.reply"], [desk])
    stranger = f"{unique('stranger')}@elsewhere.example.com"
    mail = EmailMessage()
    mail["From"] = f"Jane Stranger <{stranger}>"
    mail["To"] = address
    mail["Subject"] = "Domain transfer"
    mail["Message-ID"] = f"<{uuid.uuid4()}@elsewhere.example.com>"
    mail.set_content("Please move example.org to you")
    server = InboundServer(tickets_runtime.composed.mail_gateway, "127.0.0.1", free_port())
    serving_task = asyncio.create_task(server.run())
    try:
        await asyncio.wait_for(server.serving.wait(), 10)
        await aiosmtplib.send(mail, hostname="127.0.0.1", port=server.port, timeout=30)
    finally:
        serving_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving_task
    [ticket] = await until(
        lambda: _visible(stack, agent.headers, desk), what="the contact's ticket in the queue"
    )
    assert ticket["origin"] == "contact" and ticket["client_id"].startswith("contact-")
    answered = await stack.tickets.post(
        f"/tickets/{ticket['id']}/messages",
        json={"body": "Send us the transfer code, please."},
        headers=agent.headers,
    )
    assert answered.status_code == 201, answered.text
    [reply] = await until(lambda: stack.mail.to(stranger), what="the reply to the contact")
    assert reply.subject == f"Re: [#{ticket['number']}] Domain transfer"
    assert "Send us the transfer code, please." in reply.body and "Jane Stranger" in reply.body
    assert (
        str(reply.message["References"]).strip() == f"<ticket-{ticket['id']}@backoffice.localhost>"
    )
    assert str(reply.message["Reply-To"]).strip() == address


async def _visible(stack: Stack, headers: Headers, department_id: str) -> list[dict[str, Any]]:
    answer = await stack.tickets.get(
        "/tickets", params={"department_id": department_id}, headers=headers
    )
    found: list[dict[str, Any]] = answer.json() if answer.status_code == 200 else []
    return found


async def _the_rating_link_rates_once(
    stack: Stack, mail: Any, ticket_id: str, message_id: str
) -> None:
    """The mailed link rates the reply without logging in, once; it is in no event."""
    [link] = re.findall(r"http://\S+/rate/(\S+)", mail.body)
    assert str(stack.tickets.base_url).rstrip("/") in mail.body
    page = await stack.tickets.get(f"/rate/{link}")
    assert page.status_code == 200 and "How did we do?" in page.text
    assert page.headers["x-content-type-options"] == "nosniff"
    rated = await stack.tickets.post(f"/rate/{link}", data={"score": "4"})
    assert rated.status_code == 200 and "Thank you" in rated.text
    again = await stack.tickets.post(f"/rate/{link}", data={"score": "1"})
    assert again.status_code == 409 and "used already" in again.text
    forged = await stack.tickets.post(f"/rate/{link[:-3]}abc", data={"score": "1"})
    assert forged.status_code == 404
    bad = await stack.tickets.post(f"/rate/{link}", data={"score": "9"})
    assert bad.status_code == 422
    store = stack.apps["tickets"].state.runtime.store
    ratings = [e for e in await store.read_stream(f"ticket-{ticket_id}") if e.type == "TicketRated"]
    assert [(e.data["score"], e.data["message_id"]) for e in ratings] == [(4, message_id)]
    for app in stack.apps.values():  # the link is a secret: in no store, no event
        for event in await app.state.runtime.store.read_all(0, 100_000):
            assert link not in orjson.dumps(event.data).decode()


# ---------------------------------------------------------------- retries


async def test_smtp_down_then_up_is_retried_and_sent_once(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Retry desk", [main])
    agent = await staff(stack, "retried", ["tickets.view"], [desk])
    await subscribe(stack, agent, {"new_ticket": ["email"]})
    customer = await client(stack, "retry-client", main)
    await stack.mail.stop()
    try:
        await open_ticket(stack, customer, desk)
        [failed] = await until(
            lambda: _with(deliveries(stack, to=agent.email), status="retrying"),
            what="a failed attempt",
        )
        assert failed["attempts"] == 1 and "smtp" in failed["error"]
    finally:
        await stack.mail.start()
    [sent] = await until(
        lambda: _with(deliveries(stack, to=agent.email), status="sent"), what="sent after all"
    )
    assert sent["attempts"] >= 2 and sent["sent_at"] is not None
    await asyncio.sleep(1.5)
    assert len(stack.mail.to(agent.email)) == 1


async def test_a_gateway_answering_500_is_retried_then_failed_in_the_log(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Gateway desk", [main])
    agent = await staff(stack, "texted", ["tickets.view"], [desk])
    await subscribe(stack, agent, {"new_ticket": ["sms", "email"]})
    customer = await client(stack, "gateway-client", main)
    stack.sms.failing = True
    refused_before = stack.sms.refused
    try:
        await open_ticket(stack, customer, desk)
        [failed] = await until(
            lambda: _with(deliveries(stack, to=agent.phone), status="failed"),
            timeout=30,
            what="given up",
        )
    finally:
        stack.sms.failing = False
    assert failed["channel"] == "sms" and failed["attempts"] == ATTEMPTS
    assert "500" in failed["error"]
    assert stack.sms.refused - refused_before == ATTEMPTS and stack.sms.to(agent.phone) == []
    # The same notice by e-mail went out: one channel failing does not hold up the other.
    assert _only(await deliveries(stack, to=agent.email))["status"] == "sent"


async def test_a_burst_goes_over_few_connections_and_a_refused_address_fails_alone(
    stack: Stack,
) -> None:
    """Tickets opened at once: their notices are sent side by side over the pool's kept
    connections (never more than ``SMTP_POOL_SIZE``, 4); the one address the server
    refuses is recorded as failed attempts, and the others' mails arrive, once each."""
    main = await project(stack)
    desk = await department(stack, "Burst desk", [main])
    agents = [await staff(stack, f"burst{n}", ["tickets.view"], [desk]) for n in range(3)]
    for agent in agents:
        await subscribe(stack, agent, {"new_ticket": ["email"]})
    refused = agents[1]
    stack.mail.refused.add(refused.email)
    customer = await client(stack, "burst-client", main)
    stack.mail.drop_connections()  # the count starts from no open connection
    connections = stack.mail.connections
    await asyncio.gather(*(open_ticket(stack, customer, desk) for _ in range(8)))
    for agent in (agents[0], agents[2]):
        await until(lambda a=agent: len(stack.mail.to(a.email)) >= 8, what="8 mails each")

    async def attempted() -> list[dict[str, Any]]:
        found = await deliveries(stack, to=refused.email)
        tried = [d for d in found if d["status"] in ("retrying", "failed")]
        return tried if len(tried) == 8 else []

    failures = await until(attempted, what="the refused address's attempts recorded")
    assert all("550" in f["error"] and f["attempts"] >= 1 for f in failures)
    assert stack.mail.to(refused.email) == []
    for agent in (agents[0], agents[2]):
        subjects = [m.subject for m in stack.mail.to(agent.email)]
        assert len(subjects) == len(set(subjects)) == 8  # one per ticket, once each

        async def all_sent(agent: Person = agent) -> bool:  # the read model follows the mail
            found = await deliveries(stack, to=agent.email)
            return len(found) == 8 and {d["status"] for d in found} == {"sent"}

        await until(all_sent, what="8 deliveries recorded as sent")
    assert 1 <= stack.mail.connections - connections <= 4


async def _with(pending: Any, **wanted: Any) -> list[dict[str, Any]]:
    return [d for d in await pending if all(d[k] == v for k, v in wanted.items())]


def _only(found: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------- timers


async def test_a_timer_due_while_the_notifier_was_down_fires_once_and_suspends(
    stack: Stack,
) -> None:
    main = await project(stack)
    phone = f"+4930{uuid.uuid4().int % 10**8:08d}"
    abuser = await client(stack, "abuser", main, phone=phone)
    deadline = datetime.now(UTC) + timedelta(seconds=6)
    sent = await stack.clients.post(
        "/clients/messages",
        json={
            "client_ids": [abuser.id],
            "subject": "Abuse report",
            "text": "Your server sends spam",
            "violation": {"deadline": deadline.isoformat(), "on_no_reaction": "suspend_services"},
        },
        headers=stack.admin,
    )
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["id"]
    # The notice itself: by e-mail and, being an abuse notice, by SMS.
    [mail] = await until(lambda: stack.mail.to(abuser.email), what="abuse notice mail")
    assert mail.subject.startswith("Abuse notice: Abuse report (respond by ")
    assert "Your server sends spam" in mail.body and "will be suspended" in mail.body
    await until(lambda: stack.sms.to(phone), what="abuse notice SMS")
    [timer] = (
        await eventually(
            lambda: stack.notifier.get(
                "/timers", params={"client_id": abuser.id}, headers=stack.admin
            ),
            lambda r: r.status_code == 200 and len(r.json()) == 1,
        )
    ).json()
    assert timer["kind"] == "abuse_notice" and timer["message_id"] == message_id
    assert datetime.fromisoformat(timer["due_at"]) == deadline.replace(
        microsecond=deadline.microsecond
    )

    async with stack.restart():  # down from before the deadline until after it
        await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 1)
        card = await stack.clients.get(f"/clients/{abuser.id}", headers=stack.admin)
        assert card.json()["services"] == "active"
    suspended = await eventually(
        lambda: stack.clients.get(f"/clients/{abuser.id}", headers=stack.admin),
        lambda r: r.json()["services"] == "suspended",
    )
    assert suspended.status_code == 200
    fired = await stack.notifier.get(
        "/timers", params={"client_id": abuser.id, "status": "fired"}, headers=stack.admin
    )
    [done] = fired.json()
    store = stack.apps["notifier"].state.runtime.store
    kinds = [e.type for e in await store.read_stream(f"timer-{done['id']}")]
    assert kinds == ["TimerScheduled", "DeadlineExpired"]
    await asyncio.sleep(1.5)  # a second start finds nothing more to fire
    kinds = [e.type for e in await store.read_stream(f"timer-{done['id']}")]
    assert kinds.count("DeadlineExpired") == 1


async def test_ticket_deadlines_become_timers_warnings_and_rating_requests(stack: Stack) -> None:
    main = await project(stack)
    desk = await department(stack, "Deadline desk", [main])
    watcher = await staff(stack, "watcher", ["tickets.view", "tickets.reply"], [desk])
    await subscribe(stack, watcher, {"deadline_near": ["email"]})
    customer = await client(stack, "deadline-client", main)
    settings = await stack.tickets.put(
        "/support/settings",
        json={"close_after_days": 3, "rate_after_days": 0, "rating_mode": "message"},
        headers=stack.admin,
    )
    assert settings.status_code == 200, settings.text
    await asyncio.sleep(0.5)
    opened = await open_ticket(stack, customer, desk)
    ticket_id = opened["id"]
    # The warning is due at once here (5 h of warning before a 4 h promise): to the department.
    [warning] = await until(
        lambda: [m for m in stack.mail.to(watcher.email) if "Response due soon" in m.subject],
        what="response-time warning",
    )
    assert f"#{opened['number']}" in warning.subject and "UTC" in warning.body
    replied = await stack.tickets.post(
        f"/tickets/{ticket_id}/messages", json={"body": "On it"}, headers=watcher.headers
    )
    assert replied.status_code == 201, replied.text
    # The reply sets the auto-close deadline (3 days) and asks for a rating at once.
    [close] = (
        await eventually(
            lambda: stack.notifier.get(
                "/timers",
                params={"ticket_id": ticket_id, "kind": "ticket_auto_close"},
                headers=stack.admin,
            ),
            lambda r: r.status_code == 200 and len(r.json()) == 1,
        )
    ).json()
    left = datetime.fromisoformat(close["due_at"]) - datetime.now(UTC)
    assert timedelta(days=2, hours=23) < left <= timedelta(days=3)
    rating = await until(
        lambda: [m for m in stack.mail.to(customer.email) if "Please rate" in m.body],
        what="rating request mail",
    )
    assert len(rating) == 1
    await _the_rating_link_rates_once(stack, rating[0], ticket_id, replied.json()["message_id"])
    # The client answers: the auto-close deadline no longer holds.
    answered = await stack.tickets.post(
        f"/tickets/{ticket_id}/messages", json={"body": "thanks"}, headers=customer.headers
    )
    assert answered.status_code == 201, answered.text
    cancelled = await eventually(
        lambda: stack.notifier.get(
            "/timers",
            params={"ticket_id": ticket_id, "status": "cancelled", "kind": "ticket_auto_close"},
            headers=stack.admin,
        ),
        lambda r: r.status_code == 200 and len(r.json()) == 1,
    )
    assert cancelled.json()[0]["cancel_reason"] == "the client answered"


# ---------------------------------------------------------------- rights and input


async def test_every_endpoint_checks_its_right_and_names_bad_fields(stack: Stack) -> None:
    nobody = await staff(stack, "nobody", [])
    other = await staff(stack, "other", [])
    for path in ("/deliveries", "/timers", f"/subscriptions/{other.id}"):
        assert (await stack.notifier.get(path)).status_code == 401
        refused = await stack.notifier.get(path, headers=nobody.headers)
        assert refused.status_code == 403, (path, refused.text)
    put = await stack.notifier.put(
        f"/subscriptions/{other.id}", json={"notices": {}}, headers=nobody.headers
    )
    assert put.status_code == 403
    for body, field in (
        ({"notices": {"new_tickets": ["email"]}}, "notices.new_tickets"),
        ({"notices": {"new_ticket": ["fax"]}}, "notices.new_ticket"),
        ({"language": "de"}, "language"),
        ({"notices": [], "extra": 1}, "notices"),
    ):
        bad = await stack.notifier.put(
            f"/subscriptions/{nobody.id}", json=body, headers=nobody.headers
        )
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["field"].startswith(field), bad.json()
    for params, field in (({"channel": "fax"}, "channel"), ({"limit": 0}, "limit")):
        bad = await stack.notifier.get("/deliveries", params=params, headers=stack.admin)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == field
    bad = await stack.notifier.get("/timers", params={"kind": "soon"}, headers=stack.admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "kind"
