"""`python -m services.departments`: serve the departments API (port from SERVICE_PORT or DEPARTMENTS_PORT)."""

from services.departments.service import SPEC
from shared.service import serve

serve(SPEC)
