"""SMS through an HTTP gateway: ``POST SMS_GATEWAY_URL`` with ``{"to", "text", "id"}``."""

from __future__ import annotations

import httpx

from services.notifier.app.ports import DeliveryError
from services.notifier.settings import NotifierSettings


class HttpSms:
    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(timeout=settings.sms_timeout_seconds)

    def __repr__(self) -> str:  # never the token
        return f"HttpSms({self.settings.sms_gateway_url!r})"

    async def send(self, notice_id: str, to: str, text: str) -> None:
        url = self.settings.sms_gateway_url
        if not url:
            raise DeliveryError("sms: SMS_GATEWAY_URL is not set")
        headers = {"Idempotency-Key": notice_id}
        if self.settings.sms_gateway_token is not None:
            headers["Authorization"] = (
                f"Bearer {self.settings.sms_gateway_token.get_secret_value()}"
            )
        try:
            answer = await self._http.post(
                url, json={"to": to, "text": text, "id": notice_id}, headers=headers
            )
        except httpx.HTTPError as error:
            raise DeliveryError(f"sms: {type(error).__name__}") from None
        if answer.status_code >= 300:
            raise DeliveryError(f"sms: gateway answered {answer.status_code}")

    async def close(self) -> None:
        await self._http.aclose()
