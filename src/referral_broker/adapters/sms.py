"""Text messages through a provider's HTTPS gateway."""

from __future__ import annotations

from typing import Protocol

import httpx

from referral_broker.adapters import TIMEOUT_SECONDS
from referral_broker.services.ports import CodeNotSent


class SmsGateway(Protocol):
    async def send_sms(self, to: str, text: str) -> None: ...


class HttpSmsGateway:
    """POST `{"to": "+47…", "text": "…"}` with `Authorization: Bearer <token>`; any 2xx is success."""

    def __init__(self, url: str, token: str | None) -> None:
        self._url = url
        self._token = token

    async def send_sms(self, to: str, text: str) -> None:
        headers = {"user-agent": "referral-broker"}
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
                response = await client.post(self._url, json={"to": to, "text": text}, headers=headers)
        except httpx.HTTPError as exc:
            raise CodeNotSent(type(exc).__name__) from exc
        if not 200 <= response.status_code < 300:
            raise CodeNotSent(f"SMS gateway HTTP {response.status_code}")
