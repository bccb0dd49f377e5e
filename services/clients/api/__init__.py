"""HTTP adapter of the clients context (the clients table of API.md, and what it implies).

One router module per resource: ``clients`` (cards, passwords, services,
impersonation), ``messages`` (messages, abuse notices, attachments), ``groups``,
``projects``, ``companies`` (companies, members, contacts, equipment) and
``internal`` (other services only); ``deps.py`` holds what they share.
Commands answer ``{"id", "version", "position"}``; reads come from the
read models and accept ``?min_position=``.
"""

from fastapi import APIRouter

from services.clients.api import clients, companies, groups, messages, projects

router = APIRouter()
for resource in (clients, messages, groups, projects, companies):
    router.include_router(resource.router)
