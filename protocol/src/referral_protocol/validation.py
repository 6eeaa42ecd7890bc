"""Decode a request into a msgspec type and, when it is wrong, name every wrong field, not just the first."""

from __future__ import annotations

import re
import typing
import unicodedata
from typing import Any, TypeVar

import msgspec

from referral_protocol.errors import FieldError, InvalidRequest, MalformedRequest

T = TypeVar("T")

#: Everything decoding untrusted JSON may raise: msgspec's own errors, invalid UTF-8 inside a string,
#: and nesting too deep for the decoder. Catch this, never a subset, wherever outside bytes are decoded.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    UnicodeDecodeError,
    RecursionError,
)

#: The only control characters a clinic's copy of a text may hold: in text of several lines, line breaks and tabs.
MULTILINE_CONTROLS = frozenset("\n\r\t")
#: What stands where an old text held a character no longer allowed (U+FFFD, the replacement character).
REPLACEMENT = "\ufffd"
_NOT_CHARACTERS = frozenset("\ufffe\uffff")

_AT_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def decode_json(body: bytes, type_: type[T]) -> T:
    """Decode `body` as `type_`; raise InvalidRequest listing every field that is wrong."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError:
        pass  # fall through: find every error, not only the first msgspec saw
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise _malformed() from None
    try:
        untyped = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise _malformed() from None
    errors = field_errors(type_, untyped)
    raise InvalidRequest(errors or [FieldError("body", "invalid", "the body does not match the schema")])


def _malformed() -> MalformedRequest:
    return MalformedRequest(
        [FieldError("body", "malformed", "the body is not valid JSON (UTF-8, nested at most a few hundred levels)")]
    )


def field_errors(type_: Any, data: Any, path: str = "") -> list[FieldError]:
    """Every field of `data` that does not fit `type_`, with its dotted path."""
    struct_type = _struct_of(type_)
    if struct_type is None:
        return _leaf_errors(type_, data, path)
    if not isinstance(data, dict):
        return [FieldError(path or "body", "type", "expected an object")]
    fields = msgspec.structs.fields(struct_type)
    known = {f.encode_name for f in fields}
    # An empty key is named '""' so that every error names a field someone can find.
    errors = [FieldError(_join(path, str(key) or '""'), "unknown", "unknown field") for key in data if key not in known]
    for f in fields:
        where = _join(path, f.encode_name)
        if f.encode_name not in data:
            if f.required:
                errors.append(FieldError(where, "required", "this field is required"))
            continue
        errors.extend(field_errors(f.type, data[f.encode_name], where))
    return errors


def _leaf_errors(type_: Any, value: Any, path: str) -> list[FieldError]:
    try:
        msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _AT_PATH.search(message)
        if match:
            path = path + match.group("path").replace("$", "")
            message = message[: match.start()]
        return [FieldError(path or "body", "invalid", message.replace("`", ""))]
    return []


def _struct_of(type_: Any) -> type[msgspec.Struct] | None:
    """The Struct type behind `type_` (unwrapping Annotated and Optional), if there is exactly one."""
    if typing.get_origin(type_) is typing.Annotated:
        type_ = typing.get_args(type_)[0]
    if isinstance(type_, type) and issubclass(type_, msgspec.Struct):
        return type_
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _refused(c: str, allowed: frozenset[str]) -> bool:
    # Cc: C0 (NUL, BEL, ESC, VT, FF ...), DEL and C1; Cs: lone surrogates. Neither has a place in text a
    # person reads, and none of them but tab and line breaks may appear in XML 1.0 (so in FHIR's XML form).
    return c not in allowed and (unicodedata.category(c) in ("Cc", "Cs") or c in _NOT_CHARACTERS)


def has_control_characters(text: str, *, multiline: bool) -> bool:
    """Whether `text` holds a control character a clinic should not be shown.

    Text of several lines (a referral's need) may hold line breaks (\\n, \\r) and tabs; a one-line text
    (a name) none at all."""
    allowed = MULTILINE_CONTROLS if multiline else frozenset()
    return any(_refused(c, allowed) for c in text)


def without_control_characters(text: str, *, multiline: bool) -> str:
    """`text` with every character `has_control_characters` refuses replaced by U+FFFD, for showing or
    exporting texts that were accepted before the rule (one-line texts also lose their line breaks and tabs,
    which become spaces)."""
    allowed = MULTILINE_CONTROLS if multiline else frozenset()
    out = []
    for c in text:
        if not _refused(c, allowed):
            out.append(c)
        elif not multiline and c in MULTILINE_CONTROLS:
            out.append(" ")
        else:
            out.append(REPLACEMENT)
    return "".join(out)
