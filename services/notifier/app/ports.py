"""What the notifier's application needs from outside, as ports; adapters/ implement them.

Rules: the application imports these, never an adapter; the composition root
(``service.py``) hands it the adapters. A port's error says what the caller may do
about it (``DeliveryError``: try again later).
"""

from __future__ import annotations

from typing import Any, Protocol

from services.notifier.domain.notices import ClientCard


class DeliveryError(Exception):
    """The server or gateway did not take the notice; worth another try."""


class Mailer(Protocol):
    async def send(
        self,
        notice_id: str,
        to: str,
        subject: str,
        body: str,
        *,
        thread_id: str | None = None,
        reply_to: str | None = None,
        files: str | None = None,
        rating_of: str | None = None,
        client_id: str | None = None,
        reset_of: str | None = None,
    ) -> None: ...


class Sms(Protocol):
    async def send(self, notice_id: str, to: str, text: str) -> None: ...


class ClientDirectory(Protocol):
    """Clients' addresses, opened by the clients service (sealed on its topic)."""

    async def card(self, client_id: str) -> ClientCard | None:
        """The client's card; None when the clients service does not know the client."""
        ...


class Unavailable(Exception):
    """A service a fact needs did not answer: the fact is tried again later, for as long
    as it takes, and never parked as a dead letter (it is not the fact that is bad)."""


class ConversationUnavailable(Unavailable):
    """The service that holds the conversation did not answer; try again later."""


class Conversations(Protocol):
    """What a client's mail carries of a conversation, read from the contexts that hold
    it (their texts are sealed with their keys; they hand them out to the notifier)."""

    async def ticket(self, ticket_id: str, position: int = 0) -> dict[str, Any] | None: ...

    async def ticket_message(
        self, ticket_id: str, message_id: str, position: int = 0
    ) -> dict[str, Any] | None: ...

    async def client_message(
        self, client_id: str, message_id: str, position: int = 0
    ) -> dict[str, Any] | None: ...

    async def file(self, service: str, path: str) -> bytes | None:
        """A file's bytes; None when it is gone (the client was erased)."""
        ...


# Files are referred to by where to fetch them when the mail is sent, so their bytes
# are never copied into the notifier's store.
def ticket_files(ticket_id: str, attachments: list[dict[str, Any]]) -> tuple[dict[str, str], ...]:
    return tuple(
        {
            "service": "tickets",
            "path": f"/internal/tickets/{ticket_id}/attachments/{a['attachment_id']}",
            "filename": str(a.get("filename") or "attachment"),
            "content_type": str(a.get("content_type") or "application/octet-stream"),
        }
        for a in attachments
    )


def message_files(
    client_id: str, message_id: str, attachments: list[dict[str, Any]]
) -> tuple[dict[str, str], ...]:
    return tuple(
        {
            "service": "clients",
            "path": f"/internal/clients/{client_id}/messages/{message_id}/attachments/"
            f"{a['attachment_id']}",
            "filename": str(a.get("filename") or "attachment"),
            "content_type": str(a.get("content_type") or "application/octet-stream"),
        }
        for a in attachments
    )
