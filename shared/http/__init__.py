"""What every service's HTTP API uses.

* ``api`` – typed errors (API.md's format), read-your-writes, ``require(right)``, ``ReadDB``;
* ``internal`` – service-to-service calls with short-lived service tokens;
* ``reads`` – one row or a 404, a page with its total in ``X-Total-Count``;
* ``downloads`` – files served as downloads a browser never renders;
* ``openapi`` – the OpenAPI document lists every route's errors, in the services' format.
"""

from shared.http.api import (
    HEAD_GRACE_SECONDS,
    READ_WAIT_SECONDS,
    ApiError,
    CaughtUp,
    ExpectedVersion,
    ReadDB,
    StrictBody,
    bearer_token,
    caught_up,
    client_address,
    composed,
    invalid,
    read_models,
    require,
)
from shared.http.body_limit import (
    MAX_BODY_BYTES,
    MAX_UPLOAD_BYTES,
    BodyLimitMiddleware,
    too_large,
)
from shared.http.downloads import (
    download,
)
from shared.http.internal import (
    AUDIENCE,
    SERVICE_KIND,
    issue_service_token,
    require_service,
    verify_service_token,
)
from shared.http.reads import (
    Limit,
    Offset,
    not_found,
    one_or_404,
    page,
    set_total,
)

__all__ = [
    "AUDIENCE",
    "HEAD_GRACE_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_UPLOAD_BYTES",
    "READ_WAIT_SECONDS",
    "SERVICE_KIND",
    "ApiError",
    "BodyLimitMiddleware",
    "CaughtUp",
    "ExpectedVersion",
    "Limit",
    "Offset",
    "ReadDB",
    "StrictBody",
    "bearer_token",
    "caught_up",
    "client_address",
    "composed",
    "download",
    "invalid",
    "issue_service_token",
    "not_found",
    "one_or_404",
    "page",
    "read_models",
    "require",
    "require_service",
    "set_total",
    "too_large",
    "verify_service_token",
]
