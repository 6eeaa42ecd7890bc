"""Referral references: short enough to read aloud on the phone, random enough not to be guessed."""

from __future__ import annotations

import secrets

# Crockford's base32: no I, L, O or U, so it survives being read aloud and typed again.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_reference() -> str:
    """'RB-' and ten characters: 50 random bits, collisions refused by the database and retried."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"RB-{chars[:5]}-{chars[5:]}"


def new_customer_reference() -> str:
    """'KS-' (kundeservice) and ten characters, so a customer-service message is never mistaken for a referral."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"KS-{chars[:5]}-{chars[5:]}"
