"""`python -m services.notifier`: serve the API.

Port from SERVICE_PORT or NOTIFIER_PORT; see shared.settings.
"""

from services.notifier.service import SPEC
from shared.service import serve

serve(SPEC)
