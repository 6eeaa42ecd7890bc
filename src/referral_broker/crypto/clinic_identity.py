"""A clinic's own key material, made and used on the clinic's machine."""

from __future__ import annotations

from datetime import datetime

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from referral_broker.crypto.encoding import enrolment_fingerprint
from referral_broker.domain.enrolment import ENROLLMENT_FORMAT, Enrollment
from referral_broker.domain.errors import DomainError

_PROOF_DOMAIN = b"referral-broker enrollment proof v1\x00"


class EnrollmentInvalid(DomainError):
    """An enrolment file that is malformed or whose proof does not verify."""


class ClinicSecrets(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What the passphrase-protected key file holds: one signing key, one or more encryption keys."""

    slug: str
    signing_seed: bytes
    encryption_secrets: list[bytes]

    @classmethod
    def generate(cls, slug: str) -> ClinicSecrets:
        return cls(
            slug=slug,
            signing_seed=bytes(SigningKey.generate()),
            encryption_secrets=[bytes(PrivateKey.generate())],
        )

    @property
    def signing_public(self) -> bytes:
        return bytes(SigningKey(self.signing_seed).verify_key)

    def encryption_public(self, index: int = 0) -> bytes:
        return bytes(PrivateKey(self.encryption_secrets[index]).public_key)


def _proof_message(e: Enrollment) -> bytes:
    unsigned = [e.format, e.slug, e.name, e.encryption_key, e.signing_key, e.created_at.isoformat()]
    return _PROOF_DOMAIN + msgspec.json.encode(unsigned)


def make_enrollment(secrets_: ClinicSecrets, name: str, created_at: datetime) -> Enrollment:
    draft = Enrollment(
        format=ENROLLMENT_FORMAT,
        slug=secrets_.slug,
        name=name,
        encryption_key=secrets_.encryption_public(),
        signing_key=secrets_.signing_public,
        created_at=created_at,
        proof=b"",
    )
    proof = SigningKey(secrets_.signing_seed).sign(_proof_message(draft)).signature
    return msgspec.structs.replace(draft, proof=proof)


def check_enrollment(data: bytes) -> Enrollment:
    """Decode an enrolment file and verify its proof of possession of the signing key."""
    try:
        e = msgspec.json.decode(data, type=Enrollment)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EnrollmentInvalid(f"not an enrolment file: {exc}") from None
    if e.format != ENROLLMENT_FORMAT:
        raise EnrollmentInvalid(f"unknown enrolment format {e.format!r}")
    if len(e.encryption_key) != 32 or len(e.signing_key) != 32:
        raise EnrollmentInvalid("enrolment keys must be 32 bytes each")
    try:
        VerifyKey(e.signing_key).verify(_proof_message(e), e.proof)
    except (BadSignatureError, ValueError):
        raise EnrollmentInvalid("the enrolment file's proof does not verify; it was altered") from None
    return e


def fingerprint_of(e: Enrollment) -> str:
    return enrolment_fingerprint(e.slug, e.encryption_key, e.signing_key)
