"""`python -m services.identity`: serve the API.

Port from SERVICE_PORT or IDENTITY_PORT; see shared.settings.
"""

from services.identity.service import SPEC
from shared.service import serve

serve(SPEC)
