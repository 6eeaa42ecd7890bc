"""Who is calling the clinic API: a valid, fresh, unreplayed signature by an active clinic key, or no one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from referral_broker.domain.keys import ClinicStatus, KeyState
from referral_broker.services.context import BrokerContext
from referral_broker.store import clinics, nonces
from referral_broker.store.clinics import ClinicRow
from referral_protocol.errors import DomainError
from referral_protocol.request_signature import (
    MAX_AGE,
    RequestSignatureInvalid,
    signature_key_id,
    verify_request,
)

#: Nonces are kept a while past the signature's freshness window, so a replay is caught whatever its age.
NONCE_RETENTION = MAX_AGE * 2 + timedelta(minutes=1)


class NotAuthenticated(DomainError):
    """No valid signature: 401."""


class NotAllowed(DomainError):
    """A valid signature from a key or clinic that may not act now: 403."""


async def authenticate(ctx: BrokerContext, method: str, url: str, headers: Mapping[str, str], body: bytes) -> ClinicRow:
    try:
        key_id = signature_key_id(headers)
    except RequestSignatureInvalid as exc:
        raise NotAuthenticated(f"request signature required: {exc}") from None
    found = await clinics.signing_key(ctx.pool, key_id)
    if found is None:
        raise NotAuthenticated("the signing key is not known to this broker")
    clinic, key = found
    try:
        verified = verify_request(method, url, headers, body, public_key=key.public_key)
    except RequestSignatureInvalid as exc:
        raise NotAuthenticated(f"request signature does not verify: {exc}") from None
    if key.state == KeyState.PENDING:
        raise NotAllowed(f"key not yet verified: ask the broker's operator to confirm fingerprint {key.fingerprint}")
    if key.state != KeyState.ACTIVE:
        raise NotAllowed(f"this signing key is {key.state}; enrol a new key")
    if clinic.status != ClinicStatus.ACTIVE:
        raise NotAllowed(f"the clinic is {clinic.status}; contact the broker's operator")
    if not await nonces.first_use(ctx.pool, key_id, verified.nonce, ctx.clock()):
        raise NotAuthenticated("replayed request refused")
    return clinic
