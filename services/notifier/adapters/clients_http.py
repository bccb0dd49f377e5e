"""A client's addresses from the clients service (``GET /internal/clients/{id}/card``).

E-mails, phones and names of clients and their contacts are sealed on
``clients.events``; the clients service opens them for its own read model and
hands them to other services of the back office through its internal API, with
a service token. Nothing of it is kept here but what a notice itself holds.
"""

from __future__ import annotations

from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.notifier.app.ports import Unavailable
from services.notifier.domain.notices import ClientCard, ContactCard, language_of
from shared.http.internal import issue_service_token
from shared.observability import causation


class ClientsUnavailable(Unavailable):
    """The clients service did not answer; the event is handled again later."""


class ClientsHttp:
    def __init__(self, base_url: str, key: Ed25519PrivateKey) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key  # the notifier's own: its tokens name it
        self._http = httpx.AsyncClient(timeout=5.0, event_hooks=causation.HTTPX_HOOKS)

    def __repr__(self) -> str:
        return f"ClientsHttp({self.base_url!r})"

    async def card(self, client_id: str) -> ClientCard | None:
        """The client's card; None when the clients service does not know the client."""
        token = issue_service_token(self._key, "notifier")
        try:
            answer = await self._http.get(
                f"{self.base_url}/internal/clients/{client_id}/card",
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as error:
            raise ClientsUnavailable(type(error).__name__) from None
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise ClientsUnavailable(f"clients answered {answer.status_code}")
        return card_from(answer.json())

    async def close(self) -> None:
        await self._http.aclose()


def card_from(raw: dict[str, Any]) -> ClientCard:
    contacts = tuple(
        ContactCard(
            contact_id=str(c["contact_id"]),
            email=c.get("email"),
            phone=c.get("phone"),
            name=c.get("name"),
            email_generated=bool(c.get("email_generated")),
            notifications=bool(c.get("notifications")),
        )
        for c in raw.get("contacts", [])
    )
    return ClientCard(
        client_id=str(raw["client_id"]),
        language=language_of(raw.get("language")),
        email=raw.get("email"),
        phone=raw.get("phone"),
        contact_person=raw.get("contact_person"),
        login=raw.get("login"),
        erased=bool(raw.get("erased")),
        contacts=contacts,
    )
