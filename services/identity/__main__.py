"""`python -m services.identity`: serve the API.

Port from SERVICE_PORT or IDENTITY_PORT; see shared.runtime.settings.
"""

from services.identity.service import SPEC
from shared.runtime.service import serve

serve(SPEC)
