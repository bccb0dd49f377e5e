"""Password-reset links from the identity service (``GET /internal/password-resets/{id}/link``).

The link carries a secret (whoever has it sets the password), so the notifier
asks for it only when the mail goes out and keeps it nowhere: not in a notice
event, not in its read model, not in a log line. Identity answers 404 once the
reset is used or expired; the mail is then not worth sending.
"""

from __future__ import annotations

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.notifier.app.ports import DeliveryError
from shared.http.internal import issue_service_token
from shared.observability import causation

PLACEHOLDER = "%reset_link%"


class IdentityHttp:
    def __init__(self, base_url: str, key: Ed25519PrivateKey) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key  # the notifier's own: its tokens name it
        self._http = httpx.AsyncClient(timeout=5.0, event_hooks=causation.HTTPX_HOOKS)

    def __repr__(self) -> str:
        return f"IdentityHttp({self.base_url!r})"

    async def reset_link(self, reset_id: str) -> str:
        """The link; ``DeliveryError`` when identity does not answer or the reset is spent."""
        token = issue_service_token(self._key, "notifier")
        try:
            answer = await self._http.get(
                f"{self.base_url}/internal/password-resets/{reset_id}/link",
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as error:
            raise DeliveryError(f"identity: {type(error).__name__}") from None
        if answer.status_code == 404:
            raise DeliveryError("password reset used or expired")
        if answer.status_code != 200:
            raise DeliveryError(f"identity answered {answer.status_code}")
        return str(answer.json()["link"])

    async def close(self) -> None:
        await self._http.aclose()
