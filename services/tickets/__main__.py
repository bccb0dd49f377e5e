"""`python -m services.tickets`: serve the API.

Port from SERVICE_PORT or TICKETS_PORT; see shared.runtime.settings.
"""

from services.tickets.service import SPEC
from shared.runtime.service import serve

serve(SPEC)
