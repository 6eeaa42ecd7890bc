"""A clinic's own key material, made and used on the clinic's machine."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from referral_protocol.encoding import (
    PUBLISHED_TEST_KEY,
    enrolment_fingerprint,
    is_published_test_key,
    key_id,
    normalise_fingerprint,
)
from referral_protocol.enrolment import ENROLLMENT_FORMAT, KEY_REQUEST_FORMAT, Enrollment, KeyRequest
from referral_protocol.errors import DomainError
from referral_protocol.organisation import OrganisationNumberInvalid, organisation_number
from referral_protocol.validation import DECODE_ERRORS, has_control_characters

MAX_CLINIC_NAME = 200
_PROOF_DOMAIN = b"referral-broker enrollment proof v1\x00"
_KEY_PROOF_DOMAIN = b"referral-broker key request proof v1\x00"
_KEY_ENDORSEMENT_DOMAIN = b"referral-broker key request endorsement v1\x00"
_KEY_FINGERPRINT_DOMAIN = b"referral-broker key request v1\x00"


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

    @property
    def encryption_key_ids(self) -> list[str]:
        return [key_id(self.encryption_public(i)) for i in range(len(self.encryption_secrets))]

    def with_new_encryption_key(self) -> tuple[ClinicSecrets, bytes]:
        """These secrets with one more encryption key (first, as the newest); returns it too."""
        new = bytes(PrivateKey.generate())
        return msgspec.structs.replace(self, encryption_secrets=[new, *self.encryption_secrets]), new

    def without_encryption_key(self, id_: str) -> ClinicSecrets:
        kept = [s for s in self.encryption_secrets if key_id(bytes(PrivateKey(s).public_key)) != id_]
        return msgspec.structs.replace(self, encryption_secrets=kept)


def _proof_message(e: Enrollment) -> bytes:
    unsigned: list[object] = [e.format, e.slug, e.name, e.encryption_key, e.signing_key, e.created_at.isoformat()]
    if e.organisation_number is not None or e.her_id is not None:
        # Appended only when present, so files made before these fields existed still verify.
        unsigned += [e.organisation_number, e.her_id]
    return _PROOF_DOMAIN + msgspec.json.encode(unsigned)


def make_enrollment(
    secrets_: ClinicSecrets,
    name: str,
    created_at: datetime,
    *,
    organisation_number: str | None = None,
    her_id: str | None = None,
) -> Enrollment:
    draft = Enrollment(
        format=ENROLLMENT_FORMAT,
        slug=secrets_.slug,
        name=name,
        encryption_key=secrets_.encryption_public(),
        signing_key=secrets_.signing_public,
        created_at=created_at,
        proof=b"",
        organisation_number=organisation_number,
        her_id=her_id,
    )
    proof = SigningKey(secrets_.signing_seed).sign(_proof_message(draft)).signature
    return msgspec.structs.replace(draft, proof=proof)


def check_enrollment(data: bytes) -> Enrollment:
    """Decode an enrolment file and verify its proof of possession of the signing key."""
    try:
        e = msgspec.json.decode(data, type=Enrollment)
    except DECODE_ERRORS as exc:
        raise EnrollmentInvalid(f"not an enrolment file: {exc}") from None
    if e.format != ENROLLMENT_FORMAT:
        raise EnrollmentInvalid(f"unknown enrolment format {e.format!r}")
    if len(e.encryption_key) != 32 or len(e.signing_key) != 32:
        raise EnrollmentInvalid("enrolment keys must be 32 bytes each")
    if is_published_test_key(e.encryption_key) or is_published_test_key(e.signing_key):
        raise EnrollmentInvalid(f"the enrolment names {PUBLISHED_TEST_KEY}")
    if not e.name.strip() or len(e.name) > MAX_CLINIC_NAME or has_control_characters(e.name, multiline=False):
        raise EnrollmentInvalid(f"the clinic's name must be 1-{MAX_CLINIC_NAME} characters on one line")
    if e.organisation_number is not None:
        try:
            organisation_number(e.organisation_number)
        except OrganisationNumberInvalid as exc:
            raise EnrollmentInvalid(str(exc)) from None
    try:
        VerifyKey(e.signing_key).verify(_proof_message(e), e.proof)
    except (BadSignatureError, ValueError):
        raise EnrollmentInvalid("the enrolment file's proof does not verify; it was altered") from None
    return e


def fingerprint_of(e: Enrollment) -> str:
    return enrolment_fingerprint(e.slug, e.encryption_key, e.signing_key)


def _key_request_message(r: KeyRequest) -> bytes:
    unsigned = [
        r.format,
        r.slug,
        r.kind,
        r.encryption_key,
        r.signing_key,
        r.replaces,
        r.created_at.isoformat(),
    ]
    return _KEY_PROOF_DOMAIN + msgspec.json.encode(unsigned)


def _endorsement_message(r: KeyRequest) -> bytes:
    return _KEY_ENDORSEMENT_DOMAIN + msgspec.json.encode([_key_request_message(r), r.proof, r.endorsed_by])


def new_machine_request(secrets_: ClinicSecrets, created_at: datetime) -> KeyRequest:
    """`key add`: the new machine's keys, with a proof that its signing key is held; not yet endorsed."""
    draft = KeyRequest(
        format=KEY_REQUEST_FORMAT,
        slug=secrets_.slug,
        kind="add",
        encryption_key=secrets_.encryption_public(0),
        signing_key=secrets_.signing_public,
        created_at=created_at,
    )
    proof = SigningKey(secrets_.signing_seed).sign(_key_request_message(draft)).signature
    return msgspec.structs.replace(draft, proof=proof)


def rotation_request(secrets_: ClinicSecrets, new_public: bytes, replaces: str, created_at: datetime) -> KeyRequest:
    """`key rotate`: a new encryption key on this machine that takes over from `replaces`; endorsed here."""
    draft = KeyRequest(
        format=KEY_REQUEST_FORMAT,
        slug=secrets_.slug,
        kind="rotate",
        encryption_key=new_public,
        replaces=replaces,
        created_at=created_at,
    )
    return endorse(draft, secrets_)


def endorse(r: KeyRequest, secrets_: ClinicSecrets) -> KeyRequest:
    """Vouch for `r` with this machine's signing key (which the broker must know as an active key)."""
    if r.slug != secrets_.slug:
        raise EnrollmentInvalid(f"the key request is for {r.slug!r}, not for {secrets_.slug!r}")
    draft = msgspec.structs.replace(r, endorsed_by=key_id(secrets_.signing_public), endorsement=None)
    signature = SigningKey(secrets_.signing_seed).sign(_endorsement_message(draft)).signature
    return msgspec.structs.replace(draft, endorsement=signature)


def check_key_request(data: bytes) -> KeyRequest:
    """Decode a key request and check its shape and proof; the endorsement is checked by whoever knows
    the endorsing key (`verify_endorsement`)."""
    try:
        r = msgspec.json.decode(data, type=KeyRequest)
    except DECODE_ERRORS as exc:
        raise EnrollmentInvalid(f"not a key request: {exc}") from None
    if r.format != KEY_REQUEST_FORMAT:
        raise EnrollmentInvalid(f"unknown key request format {r.format!r}")
    if len(r.encryption_key) != 32 or (r.signing_key is not None and len(r.signing_key) != 32):
        raise EnrollmentInvalid("keys in a key request must be 32 bytes each")
    if is_published_test_key(r.encryption_key) or (r.signing_key is not None and is_published_test_key(r.signing_key)):
        raise EnrollmentInvalid(f"the key request names {PUBLISHED_TEST_KEY}")
    if r.kind == "add":
        if r.signing_key is None or r.proof is None or r.replaces is not None:
            raise EnrollmentInvalid("a request to add a machine names its signing key and proves holding it")
        try:
            VerifyKey(r.signing_key).verify(_key_request_message(r), r.proof)
        except (BadSignatureError, ValueError):
            raise EnrollmentInvalid("the key request's proof does not verify; it was altered") from None
    elif r.signing_key is not None or r.replaces is None:
        raise EnrollmentInvalid("a rotation names the key it replaces and brings no signing key")
    return r


def verify_endorsement(r: KeyRequest, endorsing_public_key: bytes) -> None:
    if r.endorsement is None or r.endorsed_by != key_id(endorsing_public_key):
        raise EnrollmentInvalid("the key request is not endorsed by this clinic's signing key")
    try:
        VerifyKey(endorsing_public_key).verify(_endorsement_message(r), r.endorsement)
    except (BadSignatureError, ValueError):
        raise EnrollmentInvalid("the key request's endorsement does not verify; it was altered") from None


def key_request_fingerprint(r: KeyRequest) -> str:
    """What the operator compares on the phone for a new key: 160 bits over the clinic and the new keys."""
    digest = hashlib.sha256(
        _KEY_FINGERPRINT_DOMAIN + msgspec.json.encode([r.slug, r.kind, r.encryption_key, r.signing_key, r.replaces])
    ).digest()[:20]
    return normalise_fingerprint(base64.b32encode(digest).decode())
