"""What the notifier's application needs from outside, as ports; adapters/ implement them.

Rules: the application imports these, never an adapter; the composition root
(``service.py``) hands it the adapters. A port's error says what the caller may do
about it (``DeliveryError``: try again later).
"""

from __future__ import annotations

from typing import Protocol

from services.notifier.domain.notices import ClientCard


class DeliveryError(Exception):
    """The server or gateway did not take the notice; worth another try."""


class Mailer(Protocol):
    async def send(self, notice_id: str, to: str, subject: str, body: str) -> None: ...


class Sms(Protocol):
    async def send(self, notice_id: str, to: str, text: str) -> None: ...


class ClientDirectory(Protocol):
    """Clients' addresses, opened by the clients service (sealed on its topic)."""

    async def card(self, client_id: str) -> ClientCard | None:
        """The client's card; None when the clients service does not know the client."""
        ...
