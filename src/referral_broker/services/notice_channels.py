"""How a notice reaches a clinic: an e-mail through SMTP, and a webhook signed with the broker's key.

A notice says only that something waits to be pulled. It carries no health information, no patient
identity, not even a reference or a count: whoever reads a clinic's mail learns nothing about anyone.

The senders are adapters behind `NoticeSender`: `adapters/smtp.py`, and `adapters/webhook.py`, which
also describes the webhook's signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from referral_broker import texts


class ChannelFailed(Exception):
    """The notice did not go out through this channel this time; `reason` is short and names no one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Notice:
    id: str
    kind: str  # "available" or "reminder"
    clinic_slug: str
    clinic_name: str
    at: datetime


def email_text(notice: Notice, broker_url: str) -> tuple[str, str]:
    """Subject and body: that something waits, and how to fetch it. Nothing about anyone."""
    norwegian, english = texts.in_both(f"clinic_mail.opening.{notice.kind}", name=notice.clinic_name)
    fetch_nb, fetch_en = texts.in_both("clinic_mail.fetch", command="referral-clinic pull")
    body = f"{norwegian}\n{fetch_nb}\n\n{english}\n{fetch_en}\n\n-- \n{broker_url}\n"
    return " / ".join(texts.in_both(f"clinic_mail.subject.{notice.kind}")), body


class NoticeSender(Protocol):
    """A port: sends one notice through one channel; raises `ChannelFailed` when it did not go out."""

    async def email(self, recipient: str, notice: Notice) -> None: ...

    async def webhook(self, url: str, notice: Notice) -> None: ...
