"""Dependencies of the notifier API's routers: the application object they call.

Routes declare ``app: NotifierDep`` instead of reaching into the runtime.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from services.notifier.app.notifier import Notifier
from shared.http.api import composed


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
# hop per request for reading an attribute.
async def notifier(request: Request) -> Notifier:
    return cast(Notifier, composed(request))


NotifierDep = Annotated[Notifier, Depends(notifier)]
