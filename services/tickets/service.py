"""How the tickets service plugs into the kernel: routers, projections, consumers."""

import asyncio
import functools

from sqlalchemy.ext.asyncio import AsyncConnection

import services.tickets as package
from services.tickets.adapters.clients_http import ClientsHttp
from services.tickets.adapters.mail_imap import ImapFetcher
from services.tickets.adapters.mail_inbound import ClientSenders, InboundServer
from services.tickets.adapters.mail_notice import SmtpNotices
from services.tickets.api import router
from services.tickets.api.catalog import router as catalog_router
from services.tickets.api.internal import router as internal_router
from services.tickets.api.live import router as live_router
from services.tickets.api.rating_page import router as rating_router
from services.tickets.api.reports import router as reports_router
from services.tickets.api.search import router as search_router
from services.tickets.api.viewers import router as viewers_router
from services.tickets.app.application import TicketsApplication
from services.tickets.app.catalog import SupportCatalog
from services.tickets.app.handlers import Tickets
from services.tickets.app.mail_gateway import MailGateway
from services.tickets.app.senders import RememberedSenders
from services.tickets.copies import access_history, support
from services.tickets.domain import events
from services.tickets.projections import projections
from services.tickets.projections.reports import TicketReports
from services.tickets.settings import TicketsSettings
from shared.access.control import Access
from shared.domain.events import RecordedEvent
from shared.messaging.copies import TopicCopy
from shared.privacy.shredding import KeyRing
from shared.projections.runner import Projection
from shared.readmodel.attachments import AttachmentPolicy, AttachmentStore, CommandScanner
from shared.runtime.service import ConsumerSpec, ServiceRuntime, ServiceSpec


def _catalog(runtime: ServiceRuntime) -> SupportCatalog:
    assert runtime.store is not None and runtime.db is not None
    db = runtime.db

    async def known_department(department_id: str) -> bool:
        async with db.engine.connect() as conn:
            found = await support.department(conn, department_id)
        return found is not None and not found.deleted

    catalog = SupportCatalog(runtime.store, db, known_department=known_department)
    return catalog


async def compose(runtime: ServiceRuntime) -> TicketsApplication:
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
    assert runtime.service_key is not None
    senders = RememberedSenders(
        ClientSenders(settings.clients_url, runtime.service_key),
        settings.inbound_sender_cache_seconds,
    )
    gateway = MailGateway(
        tickets,
        runtime.db,
        senders,
        staff,  # any principal's access: the sender's, once known to be a client
        max_bytes=settings.inbound_mail_max_bytes,
        max_files=settings.inbound_mail_max_files,
        keep_days=settings.inbound_mail_keep_days,
        blocked=frozenset(s.strip().lower() for s in settings.inbound_blocked_senders),
        notices=SmtpNotices(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            tls=settings.smtp_tls,
            starttls=settings.smtp_starttls,
        ),
    )
    await gateway.start()
    if settings.inbound_smtp_port:
        server = InboundServer(
            gateway,
            settings.inbound_smtp_host,
            settings.inbound_smtp_port,
            settings.inbound_smtp_protocol,
        )
        runtime.supervise("mail-gateway", server.run)
    for i, mailbox in enumerate(settings.inbound_imap_mailboxes):
        fetcher = ImapFetcher(gateway, mailbox, settings.inbound_imap_poll_seconds)
        runtime.supervise(f"mail-imap-{i}", fetcher.run)
    if settings.inbound_smtp_port or settings.inbound_imap_mailboxes:
        runtime.supervise("mail-gateway-prune", functools.partial(_prune_hourly, gateway))
    runtime.add_consumer(ConsumerSpec("departments", ["departments"], tickets.on_departments_event))

    async def on_clients_event(conn: AsyncConnection, event: RecordedEvent) -> None:
        # Forgotten first: a fact that fails here comes again, and forgetting twice is harmless.
        senders.on_clients_fact(event.type, event.data, event.position)
        await tickets.on_clients_event(conn, event)

    runtime.add_consumer(ConsumerSpec("clients", ["clients"], on_clients_event))
    runtime.add_consumer(ConsumerSpec("staff-names", ["identity"], tickets.on_identity_event))
    runtime.add_consumer(ConsumerSpec("deadlines", ["notifier"], tickets.on_notifier_event))
    return TicketsApplication(tickets=tickets, support_catalog=catalog, mail_gateway=gateway)


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
    port=8003,
    events=events.registry,
    title="Tickets service",
    description=package.__doc__ or "",
    # live and search first: /tickets/live and /tickets/search before /tickets/{ticket_id}
    routers=[
        live_router,
        search_router,
        router,
        viewers_router,
        catalog_router,
        reports_router,
        internal_router,
        rating_router,
    ],
    projections=_projections,
    compose=compose,
    copies=(
        TopicCopy(
            "known_departments",
            ("departments",),
            (support.known_departments, support.known_schedules),
            support.on_departments_event,
        ),
        TopicCopy("staff_names", ("identity",), (support.staff_names,), support.on_identity_event),
        TopicCopy("known_clients", ("clients",), (support.known_clients,), support.on_clients_fact),
        TopicCopy(
            "access_history",
            ("identity",),
            (access_history.access_history,),
            access_history.record,
        ),
    ),
)
