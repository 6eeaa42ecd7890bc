"""Customer service: a question or feedback sent through the contact form, read and answered by an operator,
closed, and deleted `REFERRAL_BROKER_CUSTOMER_SERVICE_RETENTION_DAYS` after it was closed.

What the sender wrote (the message, the reply address, a reference they quoted) and every answer exist only
as AEAD ciphertext under the broker's data key, the contact copy's vault (decision 0108), bound to the row
and to their purpose (docs/decisions/0060-customer-service-messages.md). Nothing of it is logged, audited or
counted: the audit trail records that a message was read, answered or closed, by whom, and its id.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from referral_broker import texts
from referral_broker.domain.ids import new_id
from referral_broker.domain.reference import new_customer_reference
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import ReplyNotSent, ReplySender
from referral_broker.store import audit, customer_messages
from referral_broker.store.customer_messages import StoredMessage
from referral_protocol.contact import ContactInvalid, normalise_email
from referral_protocol.errors import DomainError, FieldError

#: Long enough for a question with its background; a longer text belongs in a letter to the clinic.
MAX_MESSAGE_CHARS = 4000
MAX_ANSWER_CHARS = 8000
MAX_EMAIL_CHARS = 254
#: A reference the sender may quote: a referral's (`RB-`) or an earlier message's (`KS-`).
_REFERENCE = re.compile(r"^(RB|KS)-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$")
#: Line breaks and tabs are how people write; every other control character is refused, not silently dropped.
_ALLOWED_CONTROLS = frozenset("\n\r\t")
_REFERENCE_TRIES = 5


class Written(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the sender wrote, as it is encrypted (`message_ct`)."""

    message: str
    reply_to: str | None = None
    about: str | None = None


class Answer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: str
    by: str
    at: datetime


class Answers(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every answer sent, oldest first, as it is encrypted (`answer_ct`)."""

    answers: list[Answer]


class CustomerServiceRefused(DomainError):
    """The action does not apply: the message is closed or gone, has no reply address, or the text is wrong."""


class AnswerNotSent(DomainError):
    """The e-mail did not go out; nothing was recorded, and the operator may try again."""


def _has_control(value: str) -> bool:
    return any(unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS for c in value)


def marked_controls(value: str) -> str:
    """`value` with each refused control character shown as U+FFFD (�), to show the sender where it was: a page
    may not hold the character itself."""
    return "".join("\ufffd" if unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS else c for c in value)


def _checked_text(name: str, value: str, limit: int, errors: list[FieldError]) -> str:
    value = value.replace("\r\n", "\n").strip()  # a browser sends CRLF for the line break it counted as one
    if not value:
        errors.append(FieldError(name, "required", f"{name} is required"))
    elif len(value) > limit:
        errors.append(FieldError(name, "too_long", f"{name} is longer than {limit} characters"))
    elif _has_control(value):
        errors.append(FieldError(name, "control", f"{name} holds a control character"))
    return value


def check_written(message: str, reply_email: str, about: str) -> tuple[Written | None, list[FieldError]]:
    """What the form sent as a `Written`, or None and every field that is wrong (its code names the rule)."""
    errors: list[FieldError] = []
    text = _checked_text("message", message, MAX_MESSAGE_CHARS, errors)
    reply_to: str | None = None
    if reply_email.strip():
        if len(reply_email.strip()) > MAX_EMAIL_CHARS or _has_control(reply_email):
            errors.append(FieldError("reply_email", "invalid", "not an e-mail address"))
        else:
            try:
                reply_to = normalise_email(reply_email)
            except ContactInvalid:
                errors.append(FieldError("reply_email", "invalid", "not an e-mail address"))
    quoted: str | None = None
    if about.strip():
        candidate = re.sub(r"\s+", "", about).upper()
        if _REFERENCE.match(candidate):
            quoted = candidate
        else:
            errors.append(FieldError("about", "invalid", "not a reference"))
    if errors:
        return None, errors
    return Written(text, reply_to, quoted), []


def message_bound(message_id: uuid.UUID) -> bytes:
    return b"customer-message\x00" + message_id.bytes


def answer_bound(message_id: uuid.UUID) -> bytes:
    return b"customer-answer\x00" + message_id.bytes


async def receive(ctx: BrokerContext, written: Written, *, language: str) -> str:
    """Store the message encrypted; the reference its sender quotes."""
    now = ctx.clock()
    message_id = new_id(now)
    sealed = ctx.keys.vault.encrypt(msgspec.json.encode(written), bound_to=message_bound(message_id))
    for _ in range(_REFERENCE_TRIES):
        reference = new_customer_reference()
        stored = await customer_messages.insert(
            ctx.pool,
            id=message_id,
            reference=reference,
            language=language,
            received_at=now,
            message_ct=sealed,
            can_reply=written.reply_to is not None,
        )
        if stored:
            return reference
    raise RuntimeError("no free customer-service reference after several draws")  # 50 random bits: not expected


async def waiting(ctx: BrokerContext) -> list[StoredMessage]:
    return await customer_messages.listing(ctx.pool, closed=False)


async def closed(ctx: BrokerContext) -> list[StoredMessage]:
    return await customer_messages.listing(ctx.pool, closed=True)


@dataclass(frozen=True)
class OpenedMessage:
    facts: StoredMessage
    written: Written
    answers: list[Answer]


async def read(ctx: BrokerContext, message_id: uuid.UUID, *, actor: str) -> OpenedMessage:
    """Decrypt one message for an operator, and audit that it was read (its id and the reader, nothing more)."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        sealed = await customer_messages.by_id(conn, message_id)
        if sealed is None:
            raise CustomerServiceRefused("there is no such message (perhaps it was deleted after it was closed)")
        opened = _opened(ctx, sealed)
        await audit.append(conn, at=ctx.clock(), actor=actor, action="customer_message.read", subject=str(message_id))
    return opened


def _opened(ctx: BrokerContext, sealed: customer_messages.SealedMessage) -> OpenedMessage:
    message_id = sealed.facts.id
    vault = ctx.keys.vault
    written = msgspec.json.decode(vault.decrypt(sealed.message_ct, bound_to=message_bound(message_id)), type=Written)
    answers: list[Answer] = []
    if sealed.answer_ct is not None:
        plain = vault.decrypt(sealed.answer_ct, bound_to=answer_bound(message_id))
        answers = msgspec.json.decode(plain, type=Answers).answers
    return OpenedMessage(sealed.facts, written, answers)


def check_answer(text: str) -> tuple[str | None, list[FieldError]]:
    errors: list[FieldError] = []
    checked = _checked_text("answer", text, MAX_ANSWER_CHARS, errors)
    return (None, errors) if errors else (checked, [])


def reply_email(language: str, reference: str, answer: str, *, public_url: str) -> tuple[str, str]:
    """The subject and body of an answer, in the language the sender wrote in."""
    subject = texts.text(language, "contact_mail.subject", reference=reference)
    url = f"{public_url.rstrip('/')}/kontakt" + ("" if language == texts.DEFAULT_LANGUAGE else f"?lang={language}")
    body = texts.text(language, "contact_mail.text", answer=answer, reference=reference, url=url)
    return subject, body


async def answer(
    ctx: BrokerContext, message_id: uuid.UUID, text: str, *, by: str, actor: str, sender: ReplySender
) -> None:
    """Send `text` to the sender's reply address, then keep it (encrypted) beside the message, and audit.

    The row is locked while the e-mail goes out, so two operators answering at once send one after the
    other and both answers are kept. An e-mail that does not go out records nothing (AnswerNotSent)."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM customer_messages WHERE id = $1 FOR UPDATE", message_id)
        sealed = await customer_messages.by_id(conn, message_id)
        if sealed is None or sealed.facts.closed_at is not None:
            raise CustomerServiceRefused("the message is closed or was deleted; it cannot be answered")
        opened = _opened(ctx, sealed)
        if opened.written.reply_to is None:
            raise CustomerServiceRefused("the sender gave no e-mail address to answer")
        facts = sealed.facts
        subject, body = reply_email(facts.language, facts.reference, text, public_url=ctx.settings.public_url)
        try:
            await sender.send_reply(opened.written.reply_to, subject, body)
        except ReplyNotSent as exc:
            raise AnswerNotSent(f"the e-mail was not sent ({exc.reason}); nothing was recorded, try again") from exc
        now = ctx.clock()
        kept = Answers([*opened.answers, Answer(text, by, now)])
        sealed_answers = ctx.keys.vault.encrypt(msgspec.json.encode(kept), bound_to=answer_bound(message_id))
        await customer_messages.record_answer(conn, message_id, sealed_answers, now)
        await audit.append(conn, at=now, actor=actor, action="customer_message.answered", subject=str(message_id))


async def close(ctx: BrokerContext, message_id: uuid.UUID, *, actor: str) -> datetime:
    """Close the matter; returns when the retention run will delete it."""
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await customer_messages.close(conn, message_id, now):
            raise CustomerServiceRefused("the message is closed already or was deleted")
        await audit.append(conn, at=now, actor=actor, action="customer_message.closed", subject=str(message_id))
    return now + retention_period(ctx)


def retention_period(ctx: BrokerContext) -> timedelta:
    return timedelta(days=ctx.settings.customer_service_retention_days)
