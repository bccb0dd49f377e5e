"""`python -m services.notifier`: serve the notifier API (port from SERVICE_PORT or NOTIFIER_PORT)."""

from services.notifier.service import SPEC
from shared.service import serve

serve(SPEC)
