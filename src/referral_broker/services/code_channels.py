"""How a patient's one-time code travels: e-mail through SMTP, text messages through a gateway.

The message says only that a code was asked for and what it is. It says nothing about whether the
address has any referral, so a code sent to an address with none reads exactly like any other.

The senders (SMTP, the SMS gateway, the dev outbox) are adapters behind the `CodeSender` port:
`adapters/configured.py` chooses them from the settings.
"""

from __future__ import annotations

from referral_broker import texts

SUBJECT = " / ".join(texts.in_both("code.subject"))


def code_text(code: str, minutes: int) -> str:
    """The code, in bokmål and English: the patient may have asked in either."""
    return "\n".join(texts.in_both("code.text", code=code, minutes=minutes))
