"""The key-change statement (docs/protocol.md §13) against its published vector, both ways: the code makes
the same bytes where they are deterministic, and the clinic program accepts and checks the vector — and
still refuses to pin the published test key it carries."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator

from devstack import protocol_vectors
from referral_clinic import broker_pins
from referral_clinic.envelope_check import ClinicKeys, Refused, open_item
from referral_protocol import schemas
from referral_protocol.encoding import key_id
from referral_protocol.enrolment import InboxItem
from referral_protocol.envelope import BrokerSigner, resign, verify
from referral_protocol.key_change import (
    KeyChangeAction,
    KeyChangeInvalid,
    KeyChangeStatement,
    broker_key_fingerprint,
    check_statement,
    make_statement,
)

VECTOR: dict[str, Any] = json.loads((protocol_vectors.VECTORS / "key-change.json").read_bytes())
KEYS: dict[str, Any] = json.loads((protocol_vectors.VECTORS / "test-keys.json").read_bytes())


def _b(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _keys(folder: Path | None = None) -> ClinicKeys:
    return ClinicKeys(
        slug=VECTOR["clinic"],
        broker_key=_b(VECTOR["old_key"]),
        private_keys=[_b(VECTOR["opening_key"])],
        folder=folder,
    )


def test_the_code_makes_the_vectors_statement_fingerprint_and_signature() -> None:
    old, new = _b(VECTOR["old_key"]), _b(VECTOR["new_key"])
    made = make_statement(
        KeyChangeAction.ANNOUNCE,
        statement_id=protocol_vectors.STATEMENT_ID,
        clinic=VECTOR["clinic"],
        issued_at=protocol_vectors.ISSUED_AT,
        old_key=old,
        new_key=new,
    )
    assert msgspec.json.encode(made) == VECTOR["statement"].encode()
    assert broker_key_fingerprint(new) == VECTOR["new_key_fingerprint"]
    assert (key_id(old), key_id(new)) == (VECTOR["old_key_id"], VECTOR["new_key_id"])
    # Ed25519 is deterministic: signing the vector's body again with the (test) old key gives its bytes.
    signer = BrokerSigner(_b(KEYS["broker_signing_seed"]))
    assert resign(VECTOR["envelope"].encode(), signer) == VECTOR["envelope"].encode()


def test_the_clinic_program_accepts_the_vector_and_reads_the_new_key() -> None:
    item = InboxItem(delivery_id=protocol_vectors.STATEMENT_ID, envelope=VECTOR["envelope"].encode())
    opened = open_item(item, _keys())
    assert isinstance(opened, KeyChangeStatement)
    assert opened.action == "announce" and opened.new_key == _b(VECTOR["new_key"])
    assert verify(item.envelope, _b(VECTOR["old_key"])).kind == "broker-key-change"


def test_the_vector_meets_its_schemas() -> None:
    Draft202012Validator(schemas.load("key-change-v1")).validate(json.loads(VECTOR["statement"]))
    Draft202012Validator(schemas.load("envelope-body-v1")).validate(json.loads(VECTOR["envelope_body"]))
    Draft202012Validator(schemas.load("envelope-v1")).validate(json.loads(VECTOR["envelope"]))


def test_the_published_next_key_is_never_pinned(tmp_path: Path) -> None:
    item = InboxItem(delivery_id=protocol_vectors.STATEMENT_ID, envelope=VECTOR["envelope"].encode())
    keys = _keys(tmp_path)
    opened = open_item(item, keys)
    assert isinstance(opened, KeyChangeStatement)
    with pytest.raises(Refused, match="published test key"):
        broker_pins.apply(keys, opened)
    assert not (tmp_path / broker_pins.PINS_FILE).exists()


@pytest.mark.parametrize(
    ("change", "value", "message"),
    [
        ("action", "rotate", "unknown action"),
        ("format", "referral-broker/key-change/v2", "unknown format"),
        ("clinic", "another-clinic", "another clinic"),
        ("new_key_fingerprint", "AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA", "fingerprint is not the new key's"),
        ("new_key", base64.b64encode(b"x" * 31).decode(), "two different 32-byte keys"),
    ],
)
def test_a_statement_that_says_anything_wrong_of_itself_is_refused(change: str, value: str, message: str) -> None:
    statement = json.loads(VECTOR["statement"])
    statement[change] = value
    with pytest.raises(KeyChangeInvalid, match=message):
        check_statement(
            json.dumps(statement).encode(),
            signer=VECTOR["old_key_id"],
            clinic=VECTOR["clinic"],
            statement_id=protocol_vectors.STATEMENT_ID,
        )


def test_an_announcement_must_be_signed_by_the_old_key_and_a_retirement_by_the_new() -> None:
    statement = VECTOR["statement"].encode()
    sid, clinic = protocol_vectors.STATEMENT_ID, VECTOR["clinic"]
    with pytest.raises(KeyChangeInvalid, match="signed by the old key"):
        check_statement(statement, signer=VECTOR["new_key_id"], clinic=clinic, statement_id=sid)
    retire = msgspec.json.encode(
        make_statement(
            KeyChangeAction.RETIRE,
            statement_id=sid,
            clinic=clinic,
            issued_at=datetime(2026, 11, 3, tzinfo=UTC),
            old_key=_b(VECTOR["old_key"]),
            new_key=_b(VECTOR["new_key"]),
        )
    )
    assert check_statement(retire, signer=VECTOR["new_key_id"], clinic=clinic, statement_id=sid).action == "retire"
    with pytest.raises(KeyChangeInvalid, match="signed by the new key"):
        check_statement(retire, signer=VECTOR["old_key_id"], clinic=clinic, statement_id=sid)


def test_during_a_key_change_a_webhook_signed_by_either_pinned_key_verifies() -> None:
    from referral_protocol.webhook import WebhookInvalid, signature_header, verify_webhook

    old, new, stranger = BrokerSigner.generate(), BrokerSigner.generate(), BrokerSigner.generate()
    body = b'{"type":"referrals.available","clinic":"c","notification":"n","sent_at":"2026-12-07T09:00:00+00:00"}'
    at = datetime.now(UTC)
    for signer in (old, new):
        header = signature_header(signer.sign, signer.key_id, body, at)
        assert verify_webhook(header, body, [old.public_key, new.public_key]).clinic == "c"
    with pytest.raises(WebhookInvalid, match="other than the pinned"):
        verify_webhook(signature_header(stranger.sign, stranger.key_id, body, at), body, [old.public_key])
