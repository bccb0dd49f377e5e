"""`python -m services.notifier`: serve the API.

Port from SERVICE_PORT or NOTIFIER_PORT; see shared.runtime.settings.
"""

from services.notifier.service import SPEC
from shared.runtime.service import serve

serve(SPEC)
