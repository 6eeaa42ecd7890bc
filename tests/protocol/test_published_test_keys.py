"""The published test keys of docs/protocol/vectors/ are refused wherever a key is taken into use."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from devstack import protocol_vectors
from referral_broker.crypto.broker_keys import BrokerKeysUnusable, init_keys, load_keys
from referral_protocol.clinic_identity import (
    ClinicSecrets,
    EnrollmentInvalid,
    check_enrollment,
    check_key_request,
    make_enrollment,
    new_machine_request,
    rotation_request,
)
from referral_protocol.encoding import PUBLISHED_TEST_KEY_IDS, format_public_key, parse_public_key

KEYS = json.loads((protocol_vectors.VECTORS / "test-keys.json").read_bytes())
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def _b(text: str) -> bytes:
    return base64.b64decode(text)


def _test_clinic() -> ClinicSecrets:
    return ClinicSecrets(
        slug="test-clinic",
        signing_seed=_b(KEYS["clinic_signing_seed"]),
        encryption_secrets=[_b(KEYS["clinic_encryption_secret"])],
    )


def test_the_refused_ids_are_exactly_the_published_keys() -> None:
    published = {
        KEYS["broker_key_id"],
        KEYS["broker_next_key_id"],
        KEYS["clinic_signing_key_id"],
        KEYS["clinic_encryption_key_id"],
    }
    assert published == PUBLISHED_TEST_KEY_IDS


def test_an_enrolment_with_the_test_keys_is_refused_and_one_with_real_keys_is_not() -> None:
    with pytest.raises(EnrollmentInvalid, match="published test key"):
        check_enrollment(msgspec.json.encode(make_enrollment(_test_clinic(), "Test", NOW)))
    real = ClinicSecrets.generate("test-clinic")
    check_enrollment(msgspec.json.encode(make_enrollment(real, "Test", NOW)))
    mixed = ClinicSecrets(
        slug="test-clinic", signing_seed=real.signing_seed, encryption_secrets=_test_clinic().encryption_secrets
    )
    with pytest.raises(EnrollmentInvalid, match="published test key"):
        check_enrollment(msgspec.json.encode(make_enrollment(mixed, "Test", NOW)))


def test_a_key_request_naming_a_test_key_is_refused() -> None:
    with pytest.raises(EnrollmentInvalid, match="published test key"):
        check_key_request(msgspec.json.encode(new_machine_request(_test_clinic(), NOW)))
    endorser = ClinicSecrets.generate("test-clinic")
    rotation = rotation_request(endorser, _test_clinic().encryption_public(), "0" * 16, NOW)
    with pytest.raises(EnrollmentInvalid, match="published test key"):
        check_key_request(msgspec.json.encode(rotation))


def test_a_clinic_cannot_pin_the_test_broker_key() -> None:
    with pytest.raises(ValueError, match="published test key"):
        parse_public_key(KEYS["broker_pub_file"])


def test_a_broker_with_the_test_signing_key_does_not_start(tmp_path: Path) -> None:
    init_keys(tmp_path)
    load_keys(tmp_path)
    (tmp_path / "broker-signing.key").write_text(KEYS["broker_signing_seed"] + "\n")
    with pytest.raises(BrokerKeysUnusable, match="published test key"):
        load_keys(tmp_path)
    assert format_public_key(_b(KEYS["broker_signing_public"])) == KEYS["broker_pub_file"]
