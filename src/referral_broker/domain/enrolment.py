"""The files and messages by which a clinic becomes known to the broker."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from referral_broker.domain.referral import Slug

ENROLLMENT_FORMAT = "referral-clinic/enrollment/v1"


class Enrollment(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`DIR/enrollment.json`: a clinic's public keys, self-signed with its signing key."""

    format: str
    slug: Slug
    name: str
    encryption_key: bytes  # X25519 public key, 32 bytes
    signing_key: bytes  # Ed25519 public key, 32 bytes
    created_at: datetime
    proof: bytes  # Ed25519 signature over the fields above, proving the signing key is held


DeliveryId = Annotated[str, Meta(min_length=1, max_length=64)]
MAX_ACK = 500


class InboxItem(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    delivery_id: DeliveryId
    envelope: bytes  # a signed envelope, opaque to the broker's API layer


class InboxPage(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`GET /api/v1/clinic/inbox`: what waits for the calling clinic, oldest first."""

    items: list[InboxItem]
    more: bool


class AckRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    delivery_ids: Annotated[list[DeliveryId], Meta(max_length=MAX_ACK)]


class AckResult(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Acknowledgements are idempotent: an id acknowledged before appears in `acknowledged` again."""

    acknowledged: list[str]
    unknown: list[str]
