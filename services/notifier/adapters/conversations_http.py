"""What a client's mail carries of a conversation, read from the contexts that hold it.

Ticket texts are sealed with keys of the tickets service, messages to clients
with keys of the clients service; both hand them to the notifier through their
internal APIs (a service token) when a mail is due:

* tickets: ``GET /internal/tickets/{id}`` (number, subject, department) and
  ``/internal/tickets/{id}/messages/{message_id}`` (a reply's text and files);
* clients: ``GET /internal/clients/{id}/messages/{message_id}`` (subject, text
  with the macros filled, abuse details, files).

Files are fetched again from the same services when the postman sends the mail
(``file``), so their bytes are never copied into the notifier's store.
"""

from __future__ import annotations

from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.notifier.app.ports import ConversationUnavailable
from shared.http.internal import issue_service_token
from shared.observability import causation


class Conversations:
    def __init__(self, tickets_url: str, clients_url: str, key: Ed25519PrivateKey) -> None:
        self.bases = {"tickets": tickets_url.rstrip("/"), "clients": clients_url.rstrip("/")}
        self._key = key  # the notifier's own: its tokens name it
        self._http = httpx.AsyncClient(timeout=10.0, event_hooks=causation.HTTPX_HOOKS)

    def __repr__(self) -> str:
        return f"Conversations({self.bases!r})"

    async def _get(self, service: str, path: str, position: int = 0) -> httpx.Response | None:
        """``position``: of the event being handled, in that service's store: its read
        model is waited for until it has it (``?min_position=``)."""
        token = issue_service_token(self._key, "notifier")
        try:
            answer = await self._http.get(
                f"{self.bases[service]}{path}",
                params={"min_position": position} if position else None,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as error:
            raise ConversationUnavailable(f"{service}: {type(error).__name__}") from None
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise ConversationUnavailable(f"{service} answered {answer.status_code}")
        return answer

    async def _json(self, service: str, path: str, position: int = 0) -> dict[str, Any] | None:
        answer = await self._get(service, path, position)
        if answer is None:
            return None
        found: dict[str, Any] = answer.json()
        return found

    async def ticket(self, ticket_id: str, position: int = 0) -> dict[str, Any] | None:
        return await self._json("tickets", f"/internal/tickets/{ticket_id}", position)

    async def ticket_message(
        self, ticket_id: str, message_id: str, position: int = 0
    ) -> dict[str, Any] | None:
        path = f"/internal/tickets/{ticket_id}/messages/{message_id}"
        return await self._json("tickets", path, position)

    async def client_message(
        self, client_id: str, message_id: str, position: int = 0
    ) -> dict[str, Any] | None:
        path = f"/internal/clients/{client_id}/messages/{message_id}"
        return await self._json("clients", path, position)

    async def file(self, service: str, path: str) -> bytes | None:
        """A file's bytes; None when it is gone (the client was erased)."""
        if service not in self.bases or not path.startswith("/internal/"):
            return None
        answer = await self._get(service, path)
        return None if answer is None else answer.content

    async def close(self) -> None:
        await self._http.aclose()
