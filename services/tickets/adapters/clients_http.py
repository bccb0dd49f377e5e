"""The one synchronous read the support center makes of the clients service.

A template's ``%client_person%`` is the client's contact person, personal
data the clients context keeps sealed on its topic. So the tickets service
asks the clients API (``GET /clients/{id}``) when a staff member autofills a
reply, with that staff member's own token: they get the name only if they
may read the client (``clients.view``), and nothing is stored here.
"""

from __future__ import annotations

import httpx
import structlog

from shared.observability import causation

log = structlog.get_logger(__name__)

TIMEOUT = httpx.Timeout(3.0)


class ClientsHttp:
    def __init__(self, base_url: str, *, timeout: httpx.Timeout = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ClientsHttp({self.base_url!r})"

    async def contact_person(self, client_id: str, authorization: str | None) -> str | None:
        """The client's contact person (else login) as the caller may read it; None if not."""
        if not authorization:
            return None
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout, event_hooks=causation.HTTPX_HOOKS
            ) as http:
                answer = await http.get(
                    f"{self.base_url}/clients/{client_id}",
                    headers={"Authorization": authorization},
                )
        except httpx.HTTPError as error:
            log.warning("tickets.clients_unreachable", error=type(error).__name__)
            return None
        if answer.status_code != 200:
            return None
        card = answer.json()
        person = card.get("contact_person") or card.get("login")
        return str(person) if person else None
