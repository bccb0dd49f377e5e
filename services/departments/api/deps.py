"""Dependencies of the departments API's routers: the application objects they call.

Routes declare ``app: <Name>Dep`` instead of reaching into the runtime.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from services.departments.app.application import DepartmentsApplication
from services.departments.app.handlers import Departments
from shared.http.api import composed


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
# hop per request for reading an attribute.
async def application(request: Request) -> DepartmentsApplication:
    return cast(DepartmentsApplication, composed(request))


async def departments(request: Request) -> Departments:
    return (await application(request)).departments


DepartmentsDep = Annotated[Departments, Depends(departments)]
