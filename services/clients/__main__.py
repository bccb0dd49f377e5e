"""`python -m services.clients`: serve the clients API (port from SERVICE_PORT or CLIENTS_PORT)."""

from services.clients.service import SPEC
from shared.service import serve

serve(SPEC)
