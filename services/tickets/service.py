"""How the tickets service plugs into the kernel: routers, projections, consumers."""

import asyncio
import functools
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

import services.tickets as package
from services.tickets.adapters.clients_http import ClientsHttp
from services.tickets.adapters.mail_imap import ImapFetcher, ImapMailbox
from services.tickets.adapters.mail_inbound import ClientSenders, InboundServer
from services.tickets.api import router
from services.tickets.api.catalog import router as catalog_router
from services.tickets.api.internal import router as internal_router
from services.tickets.api.rating_page import router as rating_router
from services.tickets.api.reports import router as reports_router
from services.tickets.app.catalog import SupportCatalog
from services.tickets.app.handlers import Tickets
from services.tickets.app.mail_gateway import MailGateway
from services.tickets.projections import projections, support
from services.tickets.projections.reports import TicketReports
from shared.access import Access
from shared.attachments import DEFAULT_TYPES, AttachmentPolicy, AttachmentStore, CommandScanner
from shared.copies import TopicCopy
from shared.projections import Projection
from shared.service import ConsumerSpec, ServiceRuntime, ServiceSpec
from shared.shredding import KeyRing


class TicketsSettings(BaseSettings):
    """The tickets service's own options (environment variables of the same name)."""

    # Business hours within which a department promises a response (its expected
    # response time: counted by the department's schedule, round the clock without one).
    support_response_hours: float = 4.0
    # The clients service: %client_person% of response templates is read there.
    clients_url: str = "http://127.0.0.1:8004"
    # Files of ticket messages: the largest accepted, the types accepted (by name and
    # first bytes; default ``shared.attachments.DEFAULT_TYPES``), and a virus scanner's
    # command that reads the file on stdin and exits 0 when clean (none: no scan).
    ticket_attachment_max_bytes: int = 10 * 1024 * 1024
    ticket_attachment_types: list[str] = sorted(DEFAULT_TYPES)
    attachment_scan_command: str = ""
    # The mail gateway (services.tickets.app.mail_gateway): SMTP, or LMTP behind a mail
    # server, on INBOUND_SMTP_HOST:INBOUND_SMTP_PORT (0: no gateway; `make run`: 2525).
    inbound_smtp_host: str = "127.0.0.1"
    inbound_smtp_port: int = Field(default=0, ge=0, le=65535)
    inbound_smtp_protocol: Literal["smtp", "lmtp"] = "smtp"
    inbound_mail_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    inbound_mail_max_files: int = Field(default=10, ge=0, le=100)
    inbound_mail_keep_days: float = Field(default=30.0, gt=0)
    # Addresses ("spam@example.com") or whole domains ("@example.com") never heard.
    inbound_blocked_senders: list[str] = []
    # IMAP mailboxes polled for mail (JSON: [{"host", "port", "ssl", "user", "password",
    # "folder", "address"}]), every so many seconds.
    inbound_imap_mailboxes: list[ImapMailbox] = []
    inbound_imap_poll_seconds: float = Field(default=30.0, gt=0)


def _catalog(runtime: ServiceRuntime) -> SupportCatalog:
    assert runtime.store is not None and runtime.db is not None
    db = runtime.db

    async def known_department(department_id: str) -> bool:
        async with db.engine.connect() as conn:
            found = await support.department(conn, department_id)
        return found is not None and not found.deleted

    catalog = SupportCatalog(runtime.store, db, known_department=known_department)
    runtime.extensions["support_catalog"] = catalog
    return catalog


async def start(runtime: ServiceRuntime) -> None:
    """Build the application services; follow departments, clients and the notifier."""
    assert runtime.store is not None and runtime.db is not None
    catalog = _catalog(runtime)
    await catalog.start()
    access = runtime.access

    def staff(staff_id: str) -> Access | None:
        return access.by_principal.get(staff_id)

    settings = TicketsSettings()
    tickets = Tickets(
        store=runtime.store,
        db=runtime.db,
        catalog=catalog,
        keys=KeyRing(runtime.db),
        staff=staff,
        response_hours=settings.support_response_hours,
        people=ClientsHttp(settings.clients_url),
        files=AttachmentStore(
            runtime.db,
            "ticket_attachments",
            AttachmentPolicy(
                max_bytes=settings.ticket_attachment_max_bytes,
                types=frozenset(settings.ticket_attachment_types),
                scanner=CommandScanner(settings.attachment_scan_command)
                if settings.attachment_scan_command
                else None,
            ),
        ),
    )
    await tickets.start()
    runtime.extensions["tickets"] = tickets
    secret = runtime.settings.jwt_secret
    gateway = MailGateway(
        tickets,
        runtime.db,
        ClientSenders(settings.clients_url, secret.get_secret_value() if secret else ""),
        staff,  # any principal's access: the sender's, once known to be a client
        max_bytes=settings.inbound_mail_max_bytes,
        max_files=settings.inbound_mail_max_files,
        keep_days=settings.inbound_mail_keep_days,
        blocked=frozenset(s.strip().lower() for s in settings.inbound_blocked_senders),
    )
    await gateway.start()
    runtime.extensions["mail_gateway"] = gateway
    if settings.inbound_smtp_port:
        server = InboundServer(
            gateway,
            settings.inbound_smtp_host,
            settings.inbound_smtp_port,
            settings.inbound_smtp_protocol,
        )
        runtime.extensions["mail_server"] = server
        runtime.supervise("mail-gateway", server.run)
    for i, mailbox in enumerate(settings.inbound_imap_mailboxes):
        fetcher = ImapFetcher(gateway, mailbox, settings.inbound_imap_poll_seconds)
        runtime.supervise(f"mail-imap-{i}", fetcher.run)
    if settings.inbound_smtp_port or settings.inbound_imap_mailboxes:
        runtime.supervise("mail-gateway-prune", functools.partial(_prune_hourly, gateway))
    runtime.add_consumer(ConsumerSpec("departments", ["departments"], tickets.on_departments_event))
    runtime.add_consumer(ConsumerSpec("clients", ["clients"], tickets.on_clients_event))
    runtime.add_consumer(ConsumerSpec("staff-names", ["identity"], tickets.on_identity_event))
    runtime.add_consumer(ConsumerSpec("deadlines", ["notifier"], tickets.on_notifier_event))


async def _prune_hourly(gateway: MailGateway) -> None:
    """Raw mails go after their time (``INBOUND_MAIL_KEEP_DAYS``)."""
    while True:
        await gateway.prune()
        await asyncio.sleep(3600)


def _projections() -> list[Projection]:
    """The ticket core's and the catalogue's read models, and the support reports."""
    return [*projections(), TicketReports()]


SPEC = ServiceSpec(
    name="tickets",
    title="Tickets service",
    description=package.__doc__ or "",
    routers=[router, catalog_router, reports_router, internal_router, rating_router],
    projections=_projections,
    on_start=start,
    copies=(
        TopicCopy(
            "known_departments",
            ("departments",),
            (support.known_departments, support.known_schedules),
            support.on_departments_event,
        ),
        TopicCopy("staff_names", ("identity",), (support.staff_names,), support.on_identity_event),
        TopicCopy("known_clients", ("clients",), (support.known_clients,), support.on_clients_fact),
    ),
)
