"""How the tickets service plugs into the kernel: routers, projections, consumers."""

from pydantic_settings import BaseSettings

import services.tickets as package
from services.tickets.adapters.clients_http import ClientsHttp
from services.tickets.api import router
from services.tickets.api.catalog import router as catalog_router
from services.tickets.api.internal import router as internal_router
from services.tickets.api.reports import router as reports_router
from services.tickets.app.catalog import SupportCatalog
from services.tickets.app.handlers import Tickets
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
    runtime.add_consumer(ConsumerSpec("departments", ["departments"], tickets.on_departments_event))
    runtime.add_consumer(ConsumerSpec("clients", ["clients"], tickets.on_clients_event))
    runtime.add_consumer(ConsumerSpec("staff-names", ["identity"], tickets.on_identity_event))
    runtime.add_consumer(ConsumerSpec("deadlines", ["notifier"], tickets.on_notifier_event))


def _projections() -> list[Projection]:
    """The ticket core's and the catalogue's read models, and the support reports."""
    return [*projections(), TicketReports()]


SPEC = ServiceSpec(
    name="tickets",
    title="Tickets service",
    description=package.__doc__ or "",
    routers=[router, catalog_router, reports_router, internal_router],
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
