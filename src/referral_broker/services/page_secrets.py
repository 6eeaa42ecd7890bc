"""Secrets the web pages need before the service starts, derived from the broker's data secret.

Every server process derives the same values, so a CSRF token issued by one worker is accepted by
another, and no new secret has to be configured or kept.
"""

from __future__ import annotations

from pathlib import Path

from referral_broker.crypto.broker_keys import load_keys


def csrf_secret(keys_dir: Path) -> str:
    """The key that signs CSRF tokens: an HMAC of a fixed label under the data secret's index key."""
    return load_keys(keys_dir).vault.blind_index("csrf-secret", "referral-broker web v1").hex()
