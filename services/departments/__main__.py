"""`python -m services.departments`: serve the API.

Port from SERVICE_PORT or DEPARTMENTS_PORT; see shared.runtime.settings.
"""

from services.departments.service import SPEC
from shared.runtime.service import serve

serve(SPEC)
