"""What the clients service's composition root builds: its application objects, typed.

``service.py`` makes one at start (``ServiceSpec.compose``); routers reach its
parts through ``api/deps.py``. Nothing else holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.clients.app.companies import Companies
from services.clients.app.handlers import Clients


@dataclass(frozen=True)
class ClientsApplication:
    clients: Clients
    companies: Companies
