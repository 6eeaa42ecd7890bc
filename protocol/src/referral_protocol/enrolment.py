"""The files and messages by which a clinic becomes known to the broker."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from referral_protocol.referral import Slug

ENROLLMENT_FORMAT = "referral-clinic/enrollment/v1"


#: A Norwegian organisation number as written in files: nine digits (the check digit is checked apart,
#: `organisation.organisation_number`); a HER-id: 1-9 digits.
OrganisationNumber = Annotated[str, Meta(pattern=r"^[0-9]{9}$")]
HerId = Annotated[str, Meta(pattern=r"^[1-9][0-9]{0,8}$")]


class Enrollment(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """`DIR/enrollment.json`: a clinic's public keys, self-signed with its signing key.

    `organisation_number` (Enhetsregisteret) and `her_id` (Norsk Helsenett's address register) name the
    organisation as Norway does; the broker requires the organisation number of a new clinic. Files made
    before they existed have neither, and their proof covers the fields they have."""

    format: str
    slug: Slug
    name: str
    encryption_key: bytes  # X25519 public key, 32 bytes
    signing_key: bytes  # Ed25519 public key, 32 bytes
    created_at: datetime
    proof: bytes  # Ed25519 signature over the other fields, proving the signing key is held
    organisation_number: OrganisationNumber | None = None
    her_id: HerId | None = None


DeliveryId = Annotated[str, Meta(min_length=1, max_length=64)]
MAX_ACK = 500


class InboxItem(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    delivery_id: DeliveryId
    envelope: bytes  # a signed envelope, opaque to the broker's API layer


#: `GET /api/v1/clinic/inbox?after=start`: read the inbox page by page without acknowledging in between.
INBOX_START = "start"
InboxCursor = Annotated[str, Meta(min_length=1, max_length=80, pattern=r"^(start|n|[rn]\.[0-9]{1,20}\.[0-9a-f]{32})$")]


class InboxPage(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """`GET /api/v1/clinic/inbox`: what waits for the calling clinic, oldest first.

    A page with `more` says where the next one begins (`next`), to be asked for with `after`, so a clinic
    can fetch it while it still files and acknowledges this one; without `after` the page is the first."""

    items: list[InboxItem]
    more: bool
    next: InboxCursor | None = None


class AckRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    delivery_ids: Annotated[list[DeliveryId], Meta(max_length=MAX_ACK)]


class AckResult(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Acknowledgements are idempotent: an id acknowledged before appears in `acknowledged` again."""

    acknowledged: list[str]
    unknown: list[str]


KEY_REQUEST_FORMAT = "referral-clinic/key-request/v1"


class KeyRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """`key-request.json`: a new key for an enrolled clinic, vouched for by one of its active signing keys.

    `rotate` adds an encryption key on the same machine and names the key it `replaces` (which becomes
    retiring once this one is verified); `add` brings a new machine, with its own signing key, whose
    `proof` shows that signing key is held. `endorsement` is made by the clinic's existing signing key
    `endorsed_by` over everything else, so only a machine the broker already trusts can ask.
    """

    format: str
    slug: Slug
    kind: Literal["add", "rotate"]
    encryption_key: bytes  # X25519 public key, 32 bytes
    created_at: datetime
    signing_key: bytes | None = None  # `add`: the new machine's Ed25519 public key
    replaces: str | None = None  # `rotate`: key id of the encryption key to retire
    proof: bytes | None = None  # `add`: the new signing key's signature over the fields above
    endorsed_by: str | None = None  # key id of the existing signing key that endorsed it
    endorsement: bytes | None = None


class KeyRequestAnswer(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`POST /api/v1/clinic/keys`: the request is recorded; the keys wait for this fingerprint."""

    fingerprint: str
    key_ids: list[str]


class KeyStatus(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    key_id: str
    purpose: str
    state: str
    waiting: int  # deliveries still waiting that were sealed to this key (encryption keys)


class ClinicStatusReport(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`GET /api/v1/clinic/status`: the broker's view of the calling clinic; no content, no person."""

    clinic: str
    status: str
    keys: list[KeyStatus]
    waiting: int  # in the inbox now
    oldest_waiting_at: datetime | None
    undeliverable: int  # deliveries to this clinic that no key of it could open
    last_pull_at: datetime | None


RefusalReason = Literal[
    "bad_signature", "wrong_addressee", "does_not_open", "malformed_payload", "wrong_clinic", "wrong_delivery"
]


class Refusal(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    delivery_id: DeliveryId
    reason: RefusalReason


class RefusalRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`POST /api/v1/clinic/inbox/refuse`: envelopes that can never be opened correctly by this clinic."""

    refusals: Annotated[list[Refusal], Meta(max_length=MAX_ACK)]


class RefusalResult(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`refused`: now undeliverable (or already were); `unknown`: not a waiting delivery of this clinic."""

    refused: list[str]
    unknown: list[str]
