"""Secrets the web pages need before the service starts, derived from the broker's data secret.

Every server process derives the same values, so a CSRF token issued by one worker is accepted by
another, and no new secret has to be configured or kept.
"""

from __future__ import annotations

from pathlib import Path

from referral_broker.crypto.broker_keys import load_keys


def csrf_secrets(keys_dir: Path) -> list[str]:
    """The keys that sign CSRF tokens, one per readable data key (an HMAC of a fixed label under its index
    key), current first: new tokens are signed with the first, and during a data-key rotation a form opened
    before the processes restarted still posts (docs/decisions/0070)."""
    return [k.blind_index("csrf-secret", "referral-broker web v1").hex() for k in load_keys(keys_dir).vault.readable]


def csrf_secret(keys_dir: Path) -> str:
    """The key new CSRF tokens are signed with: the current data key's."""
    return csrf_secrets(keys_dir)[0]
