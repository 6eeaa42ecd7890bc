"""How a patient's one-time code travels: e-mail through SMTP, text messages through a gateway.

The message says only that a code was asked for and what it is. It says nothing about whether the
address has any referral, so a code sent to an address with none reads exactly like any other.

The senders (SMTP, the SMS gateway, the dev outbox) are adapters behind the `CodeSender` port:
`adapters/configured.py` chooses them from the settings.
"""

from __future__ import annotations

SUBJECT = "Din engangskode / Your one-time code"


def code_text(code: str, minutes: int) -> str:
    return (
        f"Engangskoden din hos henvisningsformidleren er {code}. Den gjelder i {minutes} minutter.\n"
        "Ba du ikke om en kode, kan du se bort fra denne meldingen.\n\n"
        f"Your one-time code at the referral broker is {code}. It is valid for {minutes} minutes.\n"
        "If you did not ask for a code, you can ignore this message.\n"
    )
