"""`python -m services.tickets`: serve the tickets API (port from SERVICE_PORT or TICKETS_PORT)."""

from services.tickets.service import SPEC
from shared.service import serve

serve(SPEC)
