"""`python -m services.clients`: serve the API.

Port from SERVICE_PORT or CLIENTS_PORT; see shared.runtime.settings.
"""

from services.clients.service import SPEC
from shared.runtime.service import serve

serve(SPEC)
