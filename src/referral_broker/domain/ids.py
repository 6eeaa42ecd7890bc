"""Ids of referrals and deliveries: random, but beginning with the day they were made.

The rows of one day then sit side by side in every index that begins with an id (the primary keys,
UNIQUE (referral_id, clinic_id)), so work on a day's rows — dispatch minutes after intake,
anonymisation five months later, both of which rewrite each row and give it a new index entry —
touches a few neighbouring index pages instead of one random page per row in an index that grows
with the years (docs/decisions/0114-ids-begin-with-their-day.md; measured in docs/performance.md).

Layout (an RFC 9562 version 8 UUID): 16 bits of days since 1970-01-01 (UTC; enough until 2149), then
106 random bits (the version and variant take the other 6). The id tells no more than the day, which
an anonymised referral keeps anyway.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_VERSION_8 = 0x8 << 76
_VARIANT_RFC = 0b10 << 62
_RANDOM = (1 << 112) - 1 & ~(0xF << 76) & ~(0b11 << 62)  # the 112 bits after the day, less version and variant


def new_id(now: datetime) -> uuid.UUID:
    """A fresh id for a row made at `now` (an aware datetime)."""
    day = (now - _EPOCH).days
    if not 0 <= day < 1 << 16:
        raise ValueError(f"{now.isoformat()} is outside the days an id can carry")
    return uuid.UUID(int=day << 112 | secrets.randbits(112) & _RANDOM | _VERSION_8 | _VARIANT_RFC)


def day_of(row_id: uuid.UUID) -> int:
    """The day (days since 1970-01-01, UTC) an id of `new_id` was made on."""
    return row_id.int >> 112
