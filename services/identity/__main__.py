"""`python -m services.identity`: serve the identity API (port from SERVICE_PORT or IDENTITY_PORT)."""

from services.identity.service import SPEC
from shared.service import serve

serve(SPEC)
