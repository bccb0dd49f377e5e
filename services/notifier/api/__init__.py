"""HTTP adapter of the notifier context (paths of API.md): one router module per resource.

* ``deliveries`` – ``GET /deliveries``: the delivery log;
* ``subscriptions`` – ``GET``/``PUT /subscriptions/{staff_id}``;
* ``timers`` – ``GET /timers``: pending deadlines.
"""

from fastapi import APIRouter

from services.notifier.api import deliveries, subscriptions, timers

router = APIRouter()
for resource in (deliveries, subscriptions, timers):
    router.include_router(resource.router)
