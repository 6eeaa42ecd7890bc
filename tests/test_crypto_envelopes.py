"""Sealed envelopes, padding, the contact vault, key files (security.md control 16)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from referral_broker.crypto.contact import ContactDecryptionFailed, ContactVault
from referral_protocol import envelope, keyfile
from referral_protocol.clinic_identity import (
    ClinicSecrets,
    EnrollmentInvalid,
    check_enrollment,
    make_enrollment,
)
from referral_protocol.encoding import normalise_fingerprint
from referral_protocol.errors import EnvelopeRejected, KeyFileError
from referral_protocol.padding import BUCKETS, pad, unpad

BROKER = envelope.BrokerSigner.generate()
CLINIC_A = ClinicSecrets.generate("clinic-a")
CLINIC_B = ClinicSecrets.generate("clinic-b")


def _seal(
    payload: bytes = b"need",
    clinic: str = "clinic-a",
    keys: list[bytes] | None = None,
    signer: envelope.BrokerSigner = BROKER,
) -> bytes:
    return envelope.seal(
        payload,
        kind="referral",
        delivery_id="d-1",
        reference="RB-1",
        clinic=clinic,
        issued_at=datetime.now(UTC),
        recipient_keys=keys or [CLINIC_A.encryption_public()],
        signer=signer,
    ).data


def _open(data: bytes, clinic: str = "clinic-a", secrets: ClinicSecrets = CLINIC_A) -> bytes:
    return envelope.open_envelope(
        data, broker_key=BROKER.public_key, clinic=clinic, private_keys=secrets.encryption_secrets
    )[1]


def test_envelope_opens_for_its_clinic() -> None:
    assert _open(_seal(b"hello")) == b"hello"


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_flipped_byte_is_refused(data: st.DataObject) -> None:
    sealed = bytearray(_seal())
    i = data.draw(st.integers(0, len(sealed) - 1))
    bit = data.draw(st.integers(0, 7))
    sealed[i] ^= 1 << bit
    with pytest.raises(EnvelopeRejected):
        _open(bytes(sealed))


def test_envelope_signed_by_another_key_is_refused() -> None:
    with pytest.raises(EnvelopeRejected, match="pinned broker key"):
        _open(_seal(signer=envelope.BrokerSigner.generate()))


def test_envelope_for_another_clinic_is_refused() -> None:
    with pytest.raises(EnvelopeRejected, match="addressed to"):
        _open(_seal(clinic="clinic-b", keys=[CLINIC_B.encryption_public()]))


def test_envelope_not_sealed_to_our_key_is_refused() -> None:
    with pytest.raises(EnvelopeRejected, match="not sealed to any key"):
        _open(_seal(keys=[CLINIC_B.encryption_public()]))


def test_envelope_sealed_to_several_keys_opens_with_each() -> None:
    second = ClinicSecrets.generate("clinic-a")
    data = _seal(b"x", keys=[CLINIC_A.encryption_public(), second.encryption_public()])
    assert _open(data) == b"x"
    assert _open(data, secrets=second) == b"x"


@given(st.binary(max_size=70_000))
def test_padding_round_trips_and_hides_length(plaintext: bytes) -> None:
    if len(plaintext) >= BUCKETS[-1]:
        with pytest.raises(ValueError):
            pad(plaintext)
        return
    padded = pad(plaintext)
    assert len(padded) in BUCKETS
    assert unpad(padded) == plaintext


def test_needs_of_different_length_give_envelopes_of_one_size() -> None:
    short = _seal(b"a" * 10)
    long = _seal(b"b" * 1500)
    assert len(short) == len(long)


@given(st.binary(min_size=1, max_size=5000))
def test_damaged_padding_is_refused(noise: bytes) -> None:
    candidate = noise.ljust(BUCKETS[0], b"\x00")[: BUCKETS[0]]
    if candidate.rstrip(b"\x00").endswith(b"\x80"):
        return
    with pytest.raises(EnvelopeRejected):
        unpad(candidate)


def test_contact_copy_is_bound_to_its_row() -> None:
    vault = ContactVault(ContactVault.generate_secret())
    ct = vault.encrypt(b"kari@example.no", bound_to=b"row-1")
    assert vault.decrypt(ct, bound_to=b"row-1") == b"kari@example.no"
    assert b"kari" not in ct
    with pytest.raises(ContactDecryptionFailed):
        vault.decrypt(ct, bound_to=b"row-2")
    with pytest.raises(ContactDecryptionFailed):
        ContactVault(ContactVault.generate_secret()).decrypt(ct, bound_to=b"row-1")


def test_blind_index_matches_equal_values_only_under_its_key() -> None:
    secret = ContactVault.generate_secret()
    a, b = ContactVault(secret), ContactVault(secret)
    assert a.blind_index("email", "kari@example.no") == b.blind_index("email", "kari@example.no")
    assert a.blind_index("email", "kari@example.no") != a.blind_index("phone", "kari@example.no")
    assert a.blind_index("email", "x") != ContactVault(ContactVault.generate_secret()).blind_index("email", "x")


def test_key_file_needs_the_passphrase(tmp_path: Path) -> None:
    locked = keyfile.lock(b"secret", "a long passphrase", profile="interactive")
    assert keyfile.unlock(locked, "a long passphrase") == b"secret"
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        keyfile.unlock(locked, "another passphrase")
    with pytest.raises(KeyFileError, match="at least"):
        keyfile.lock(b"secret", "short", profile="interactive")
    path = tmp_path / "clinic.key"
    keyfile.write_private(path, locked)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(FileExistsError):
        keyfile.write_private(path, locked)


def test_altered_enrollment_is_refused() -> None:
    e = make_enrollment(CLINIC_A, "Klinikk A", datetime.now(UTC))
    check_enrollment(msgspec.json.encode(e))
    forged = msgspec.structs.replace(e, encryption_key=CLINIC_B.encryption_public())
    with pytest.raises(EnrollmentInvalid):
        check_enrollment(msgspec.json.encode(forged))


def test_fingerprint_is_accepted_as_people_copy_it() -> None:
    assert normalise_fingerprint("abcd efgh-ijkl") == "ABCD-EFGH-IJKL"
