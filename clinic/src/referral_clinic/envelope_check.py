"""Verifying an envelope: the broker's signature, the addressee, the seal, and what the payload says of itself.

What fails a check is a `Refused`, whose message says which check, never the content. Failures that no
machine of this clinic could ever get past (a bad signature, another addressee, a box that does not
open, a malformed or mismatched payload) carry `report_as`: the broker is told, and takes the delivery
out of the inbox as undeliverable. What another of the clinic's machines may open, or a newer version
of this tool may read, has none: it is skipped and left waiting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import msgspec

from referral_clinic import referral_file
from referral_protocol.encoding import key_id
from referral_protocol.enrolment import InboxItem, RefusalReason
from referral_protocol.envelope import EnvelopeBody, OpeningKeys, verify_pinned
from referral_protocol.errors import EnvelopeRejected, EnvelopeSignedByAnotherKey
from referral_protocol.key_change import KEY_CHANGE_KIND, KeyChangeInvalid, KeyChangeStatement, check_statement
from referral_protocol.notice import NOTICE_KINDS, NOTICE_PAYLOAD_FORMAT, NoticeKind, NoticePayload
from referral_protocol.referral import REFERRAL_PAYLOAD_FORMAT, ReferralPayload
from referral_protocol.validation import DECODE_ERRORS

_payload_decoder = msgspec.json.Decoder(ReferralPayload)
_notice_decoder = msgspec.json.Decoder(NoticePayload)
_AT_PATH = re.compile(r"at `(\$[^`]*)`")
_KEY_ID = re.compile(r"[0-9a-f]{16}")


class Refused(Exception):
    """An envelope failed a check; the message says which, and never shows its content.

    `report_as` is set when no machine of this clinic could ever open it correctly: the broker is
    told, and the delivery leaves the inbox. Without it the envelope is skipped and left waiting.
    """

    def __init__(self, message: str, report_as: RefusalReason | None = None) -> None:
        super().__init__(message)
        self.report_as: RefusalReason | None = report_as


class UnknownBrokerKey(Refused):
    """Signed by a broker key this clinic does not pin: left waiting, and the clinic is told to re-pin."""

    def __init__(self, message: str, signer: str) -> None:
        super().__init__(message)
        self.signer = signer


@dataclass(frozen=True)
class ClinicKeys:
    """What opening an envelope needs: who we are, whom we trust, and our private encryption keys.

    `broker_key` is the key pinned in config.json; `extra_broker_keys` those pinned beside it during a
    change of the broker's key (`broker_pins`), kept in `folder`."""

    slug: str
    broker_key: bytes
    private_keys: list[bytes]
    extra_broker_keys: tuple[bytes, ...] = ()
    folder: Path | None = None

    @property
    def pinned(self) -> tuple[bytes, ...]:
        return (self.broker_key, *(k for k in self.extra_broker_keys if k != self.broker_key))

    @cached_property
    def opening(self) -> OpeningKeys:
        return OpeningKeys(self.private_keys)

    @property
    def key_ids(self) -> frozenset[str]:
        return self.opening.key_ids


def unknown_signer_message(signer: str, folder: Path | None) -> str:
    """What a clinic is told of an envelope signed by a broker key it has not pinned."""
    shown_id = signer if _KEY_ID.fullmatch(signer) else "(malformed key id)"
    where = f" --dir {folder}" if folder is not None else ""
    return (
        f"envelope is signed by broker key {shown_id}, which this clinic has not pinned, and no key-change "
        "statement for it was seen here; it is left waiting at the broker (nothing is lost). Ask the broker's "
        "operator, on a number you already know, for the new broker.pub and its fingerprint, then run "
        f"`referral-clinic pin-broker-key{where} --file broker.pub --fingerprint <fingerprint>` and pull again"
    )


def _open(item: InboxItem, keys: ClinicKeys) -> tuple[EnvelopeBody, bytes, bytes]:
    """Verify and unseal, telling apart what is wrong with the envelope from what this machine lacks.
    Returns the body, the padded-off payload and the broker key that signed it."""
    try:
        body, signed_by = verify_pinned(item.envelope, keys.pinned)
    except EnvelopeSignedByAnotherKey as exc:
        # Our pinned key, not the envelope, may be what is out of date: never report this one.
        shown_id = exc.signer if _KEY_ID.fullmatch(exc.signer) else "?"
        raise UnknownBrokerKey(unknown_signer_message(exc.signer, keys.folder), shown_id) from None
    except EnvelopeRejected as exc:
        raise Refused(str(exc), "bad_signature") from None
    if body.clinic != keys.slug:
        raise Refused(f"envelope is addressed to {body.clinic!r}, not to this clinic", "wrong_addressee")
    if not keys.key_ids & {r.key_id for r in body.recipients}:
        raise Refused(
            "envelope is not sealed to any key this machine holds (another machine of the clinic may hold one); "
            "left waiting"
        )
    try:
        plaintext = keys.opening.unseal(body)
    except EnvelopeRejected as exc:
        raise Refused(str(exc), "does_not_open") from None
    if body.delivery_id != item.delivery_id:
        raise Refused("envelope was served under another delivery's id", "wrong_delivery")
    return body, plaintext, signed_by


def _where(exc: Exception) -> str:
    where = _AT_PATH.search(str(exc))  # only the field's path: msgspec may quote values
    return f" (at {where.group(1)})" if where else ""


def open_referral(item: InboxItem, keys: ClinicKeys) -> ReferralPayload:
    """Verify the broker's signature, unseal, and check the referral inside is for this delivery to us."""
    opened = open_item(item, keys)
    if isinstance(opened, KeyChangeStatement):
        raise Refused("envelope holds a broker key-change statement, not a referral")
    if not isinstance(opened, ReferralPayload):
        raise Refused(f"envelope holds a {opened.kind!r} notice, not a referral")
    return opened


def open_item(item: InboxItem, keys: ClinicKeys) -> ReferralPayload | NoticePayload | KeyChangeStatement:
    """Open a referral, a notice or a broker key-change statement and check everything it says about itself."""
    body, plaintext, signed_by = _open(item, keys)
    if body.kind == KEY_CHANGE_KIND:
        try:
            return check_statement(plaintext, signer=key_id(signed_by), clinic=keys.slug, statement_id=body.delivery_id)
        except KeyChangeInvalid as exc:
            raise Refused(str(exc)) from None  # never reported: a newer tool may read it
    if body.kind == "referral":
        return _check_referral(body, plaintext, keys)
    if body.kind in NOTICE_KINDS:
        return _check_notice(body, plaintext, keys)
    raise Refused(f"envelope holds a {body.kind!r}, which this version of referral-clinic cannot read; upgrade it")


def _check_referral(body: EnvelopeBody, plaintext: bytes, keys: ClinicKeys) -> ReferralPayload:
    try:
        payload = _payload_decoder.decode(plaintext)
    except DECODE_ERRORS as exc:
        raise Refused(
            "the sealed referral is not a valid referral document" + _where(exc), "malformed_payload"
        ) from None
    if payload.format != REFERRAL_PAYLOAD_FORMAT:
        raise Refused(f"the sealed referral has unknown format {payload.format!r}; upgrade referral-clinic")
    if payload.clinic != keys.slug:
        raise Refused(f"the sealed referral is for clinic {payload.clinic!r}, re-sealed to this clinic", "wrong_clinic")
    if payload.delivery_id != body.delivery_id or payload.reference != body.reference:
        raise Refused("the sealed referral belongs to another delivery than its envelope", "wrong_delivery")
    if not referral_file.is_file_safe(payload.reference):
        raise Refused("the referral's reference cannot be used as a file name", "malformed_payload")
    return payload


def _check_notice(body: EnvelopeBody, plaintext: bytes, keys: ClinicKeys) -> NoticePayload:
    try:
        notice = _notice_decoder.decode(plaintext)
    except DECODE_ERRORS as exc:
        raise Refused("the sealed notice is not a valid notice" + _where(exc), "malformed_payload") from None
    if notice.format != NOTICE_PAYLOAD_FORMAT:
        raise Refused(f"the sealed notice has unknown format {notice.format!r}; upgrade referral-clinic")
    if notice.kind != body.kind:
        raise Refused("the sealed notice is of another kind than its envelope", "malformed_payload")
    if notice.clinic != keys.slug:
        raise Refused(f"the sealed notice is for clinic {notice.clinic!r}, re-sealed to this clinic", "wrong_clinic")
    if notice.notice_id != body.delivery_id or notice.reference != body.reference:
        raise Refused("the sealed notice belongs to another delivery than its envelope", "wrong_delivery")
    if not (referral_file.is_file_safe(notice.reference) and referral_file.is_file_safe(notice.notice_id)):
        raise Refused("the notice's reference or id cannot be used as a file name", "malformed_payload")
    if notice.kind == NoticeKind.CORRECTION and notice.patient is None:
        raise Refused("the correction notice carries no corrected details", "malformed_payload")
    return notice
