"""HTTP adapter of identity: login, sessions, staff, rights (the identity table of API.md).

One router module per resource: ``auth`` (login, logout), ``me`` (the caller's
own account and password), ``staff`` (members, cards, avatars), ``rights``
(individual grants, the catalogue) and ``internal`` (other services only);
``deps.py`` holds what they share. Commands answer ``{"id", "version",
"position"}``; reads come from the read models and accept ``?min_position=``.
"""

from fastapi import APIRouter

from services.identity.api import auth, me, rights, staff

router = APIRouter()
for resource in (auth, me, staff, rights):
    router.include_router(resource.router)
