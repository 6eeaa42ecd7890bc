"""How a bearer token is kept: only its hash, so a copy of the database opens nothing.

Manage links, rights sessions and operator sessions are random tokens of 256 bits, too many to guess,
so a plain SHA-256 suffices (no salt, no slow hash) and lets the token be looked up by its hash.
The bytes must never change: every stored link and session is found by them.
"""

from __future__ import annotations

import hashlib


def token_hash(token: str) -> bytes:
    """SHA-256 of the token's UTF-8 bytes: what is stored and looked up in place of the token."""
    return hashlib.sha256(token.encode()).digest()
