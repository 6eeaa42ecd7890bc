"""The broker's signing key changes: a key-change statement, served in every clinic's inbox.

A statement travels as an ordinary v1 envelope of kind `broker-key-change`, sealed to the clinic's
encryption keys and signed by the broker, and its payload is a `KeyChangeStatement`
(`referral-broker/key-change/v1`):

- `announce`: signed by the OLD key (the one the clinic pinned), carrying the NEW key and its fingerprint.
  The clinic pins the new key next to the old one and accepts envelopes signed by either.
- `retire`: signed by the NEW key, naming the old key; the clinic drops its pin of the old key.

A clinic program that does not know this kind leaves the envelope waiting (docs/protocol.md §11): it is
served again, never lost, and the envelopes signed by the new key wait too until the clinic upgrades or
re-pins out of band. See docs/protocol.md, "Broker key changes".
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from enum import StrEnum

import msgspec

from referral_protocol.encoding import key_id

KEY_CHANGE_KIND = "broker-key-change"
KEY_CHANGE_FORMAT = "referral-broker/key-change/v1"
#: what an envelope of this kind names as its reference: it concerns no referral
KEY_CHANGE_REFERENCE = "-"


class KeyChangeAction(StrEnum):
    ANNOUNCE = "announce"  # signed by old_key: pin new_key beside it
    RETIRE = "retire"  # signed by new_key: drop the pin of old_key


class KeyChangeStatement(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The payload of a `broker-key-change` envelope; compact JSON, fields in this order."""

    format: str
    action: str  # a KeyChangeAction
    statement_id: str  # equal to the envelope's delivery_id: what the clinic acknowledges
    clinic: str
    issued_at: datetime
    old_key: bytes  # Ed25519 public key, 32 bytes
    new_key: bytes  # Ed25519 public key, 32 bytes
    new_key_fingerprint: str  # broker_key_fingerprint(new_key)


class KeyChangeInvalid(Exception):
    """A statement that must not be acted on; the message says why (never a key's secret)."""


def broker_key_fingerprint(public_key: bytes) -> str:
    """What a clinic compares by phone before pinning a broker key from a file: 160 bits of SHA-256,
    base32, in groups of four (`referral-broker broker key v1` ‖ 0x00 ‖ key)."""
    digest = hashlib.sha256(b"referral-broker broker key v1\x00" + public_key).digest()[:20]
    text = base64.b32encode(digest).decode()
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def make_statement(
    action: KeyChangeAction, *, statement_id: str, clinic: str, issued_at: datetime, old_key: bytes, new_key: bytes
) -> KeyChangeStatement:
    return KeyChangeStatement(
        format=KEY_CHANGE_FORMAT,
        action=action.value,
        statement_id=statement_id,
        clinic=clinic,
        issued_at=issued_at,
        old_key=old_key,
        new_key=new_key,
        new_key_fingerprint=broker_key_fingerprint(new_key),
    )


_decoder = msgspec.json.Decoder(KeyChangeStatement)


def check_statement(payload: bytes, *, signer: str, clinic: str, statement_id: str) -> KeyChangeStatement:
    """Decode a statement from an envelope already verified as signed by key id `signer`, and check what
    it says of itself: its format, addressee and id, the keys' sizes, the fingerprint, and that the
    signer is the key the action requires (`announce`: the old key; `retire`: the new one)."""
    try:
        statement = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        raise KeyChangeInvalid("the key-change statement is malformed") from None
    if statement.format != KEY_CHANGE_FORMAT:
        raise KeyChangeInvalid(f"the key-change statement has unknown format {statement.format!r}")
    if statement.clinic != clinic or statement.statement_id != statement_id:
        raise KeyChangeInvalid("the key-change statement belongs to another clinic or delivery than its envelope")
    if len(statement.old_key) != 32 or len(statement.new_key) != 32 or statement.old_key == statement.new_key:
        raise KeyChangeInvalid("the key-change statement does not name two different 32-byte keys")
    if statement.new_key_fingerprint != broker_key_fingerprint(statement.new_key):
        raise KeyChangeInvalid("the key-change statement's fingerprint is not the new key's")
    if statement.action == KeyChangeAction.ANNOUNCE:
        required = statement.old_key
    elif statement.action == KeyChangeAction.RETIRE:
        required = statement.new_key
    else:
        raise KeyChangeInvalid(f"the key-change statement has unknown action {statement.action!r}")
    if signer != key_id(required):
        raise KeyChangeInvalid(f"a key-change {statement.action} must be signed by the {required_name(statement)}")
    return statement


def required_name(statement: KeyChangeStatement) -> str:
    return "old key" if statement.action == KeyChangeAction.ANNOUNCE else "new key"
