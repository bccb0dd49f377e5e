"""What the tickets service's composition root builds: its application objects, typed.

``service.py`` makes one at start (``ServiceSpec.compose``); routers reach its
parts through ``api/deps.py``. Nothing else holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.tickets.app.catalog import SupportCatalog
from services.tickets.app.handlers import Tickets
from services.tickets.app.mail_gateway import MailGateway


@dataclass(frozen=True)
class TicketsApplication:
    tickets: Tickets
    support_catalog: SupportCatalog
    mail_gateway: MailGateway
