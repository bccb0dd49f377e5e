"""HTTP adapter of the departments context (the departments table of API.md).

One router module per resource: ``departments`` (departments, their rights, the
expected response time) and ``schedules``; ``deps.py`` holds what they share.
"""

from fastapi import APIRouter

from services.departments.api import departments, schedules

router = APIRouter()
for resource in (departments, schedules):
    router.include_router(resource.router)
