"""How the tickets service plugs into the kernel: routers, projections, consumers."""

import services.tickets as package
from services.tickets.adapters.clients_http import ClientsHttp
from services.tickets.api import router
from services.tickets.api.catalog import router as catalog_router
from services.tickets.api.live import router as live_router
from services.tickets.api.reports import router as reports_router
from services.tickets.api.search import router as search_router
from services.tickets.app.application import TicketsApplication
from services.tickets.app.catalog import SupportCatalog
from services.tickets.app.handlers import Tickets
from services.tickets.copies import support
from services.tickets.domain import events
from services.tickets.projections import projections
from services.tickets.projections.reports import TicketReports
from services.tickets.settings import TicketsSettings
from shared.access.control import Access
from shared.messaging.copies import TopicCopy
from shared.privacy.shredding import KeyRing
from shared.projections.runner import Projection
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
    )
    await tickets.start()
    runtime.add_consumer(ConsumerSpec("departments", ["departments"], tickets.on_departments_event))
    runtime.add_consumer(ConsumerSpec("clients", ["clients"], tickets.on_clients_event))
    runtime.add_consumer(ConsumerSpec("staff-names", ["identity"], tickets.on_identity_event))
    runtime.add_consumer(ConsumerSpec("deadlines", ["notifier"], tickets.on_notifier_event))
    return TicketsApplication(tickets=tickets, support_catalog=catalog)


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
    routers=[live_router, search_router, router, catalog_router, reports_router],
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
    ),
)
