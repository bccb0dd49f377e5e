"""What runs a service: its spec, the runtime that starts and supervises its parts, settings.

* ``absent`` – optional modules libraries look for per call, marked absent once;
* ``service`` – ``ServiceSpec, ``ServiceRuntime``, ``create_app`` and ``serve``;
* ``settings`` – configuration from the environment (pydantic-settings);
* ``sources`` – where each service's event store and read-model database are.
"""

from shared.runtime.absent import remember_absent
from shared.runtime.service import (
    PROJECTION_LAG,
    REFILL_PROBLEM,
    REFILL_WAIT_SECONDS,
    RELAY_LAG,
    REQUEST_SECONDS,
    ConsumerSpec,
    CorrelationMiddleware,
    ServiceRuntime,
    ServiceSpec,
    create_app,
    error_body,
    serve,
)
from shared.runtime.settings import (
    ServiceSettings,
    development_secret,
)
from shared.runtime.sources import (
    Source,
    resolve,
)

__all__ = [
    "PROJECTION_LAG",
    "REFILL_PROBLEM",
    "REFILL_WAIT_SECONDS",
    "RELAY_LAG",
    "REQUEST_SECONDS",
    "ConsumerSpec",
    "CorrelationMiddleware",
    "ServiceRuntime",
    "ServiceSettings",
    "ServiceSpec",
    "Source",
    "create_app",
    "development_secret",
    "error_body",
    "remember_absent",
    "resolve",
    "serve",
]
