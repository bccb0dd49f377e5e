"""`python -m services.clients`: serve the API.

Port from SERVICE_PORT or CLIENTS_PORT; see shared.settings.
"""

from services.clients.service import SPEC
from shared.service import serve

serve(SPEC)
