"""Development only: messages written as files instead of sent."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from referral_broker.services.ports import CodeNotSent


class DevOutbox:
    """Each message becomes a file (mode 0600) in `folder`, newest last by name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, channel: str, to: str, text: str) -> Path:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.folder / f"{stamp}-{secrets.token_hex(4)}.{channel}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f"To: {to}\n\n{text}")
        return path

    async def send_sms(self, to: str, text: str) -> None:
        await self.deliver("sms", to, text)

    async def deliver(self, channel: str, to: str, text: str) -> None:
        try:
            self.write(channel, to, text)
        except OSError as exc:
            raise CodeNotSent(f"dev outbox: {exc.strerror}") from exc
