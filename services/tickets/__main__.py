"""`python -m services.tickets`: serve the API.

Port from SERVICE_PORT or TICKETS_PORT; see shared.settings.
"""

from services.tickets.service import SPEC
from shared.service import serve

serve(SPEC)
