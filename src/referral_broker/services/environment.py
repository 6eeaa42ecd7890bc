"""How a setting is written in the environment, and reading a settings struct's fields from it.

A field names its variable and meaning with `variable(...)`; `url(...)`, `DURATION`, `NETWORKS` and
`BASE_URL` say how its text is written where that is not the plain text or number it is. Every field is read
the same way: the text becomes a value, `msgspec.convert` checks it against the field's type and `Meta`
constraints, and a wrong one stops the start with a line naming the variable and what it expects.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi
from msgspec import Meta


class ConfigError(Exception):
    """A variable is missing or wrong; the message names it and says what is expected."""


def variable(name: str, meaning: str, *, unset: str | None = None) -> Meta:
    """A setting's environment variable and what it means; `unset` says what leaving it out does."""
    return Meta(description=meaning, extra={"env": name, **({"unset": unset} if unset else {})})


def url(*schemes: str) -> Meta:
    """A URL of one of these schemes, in any case as `urlsplit` reads a scheme; messages show the first."""
    pattern = "^(?i:" + "|".join(re.escape(s) for s in schemes) + "):"
    return Meta(pattern=pattern, extra={"schemes": schemes})


DURATION = Meta(extra={"written": "duration"})  # seconds, written `90`, `90s`, `15m`, `24h` or `2d`
NETWORKS = Meta(extra={"written": "networks"})  # comma-separated IP addresses or CIDR ranges, each checked
TEXTS = Meta(extra={"written": "texts"})  # semicolon-separated texts (a comma may be part of one)
BASE_URL = Meta(extra={"written": "base URL"})  # paths are appended to it, so a trailing slash is dropped


@dataclass(frozen=True)
class Variable:
    """One field of a settings struct as the environment gives it."""

    field: str
    name: str
    meaning: str
    unset: str | None
    required: bool
    default: Any
    optional: bool  # the field may be None; an empty value then means unset
    kind: mi.Type  # the value's type without its metadata and without `| None`
    written: str | None
    schemes: tuple[str, ...]
    hint: Any  # the field's whole annotated type, for msgspec.convert


_S = TypeVar("_S", bound=msgspec.Struct)


@functools.cache
def variables(struct: type[msgspec.Struct]) -> tuple[Variable, ...]:
    """The struct's fields in their order; each must name its variable with `variable(...)`."""
    hints = typing.get_type_hints(struct, include_extras=True)
    info = mi.type_info(struct)
    if not isinstance(info, mi.StructType):
        raise TypeError(f"{struct.__name__} is not a plain struct")
    found: list[Variable] = []
    for f in info.fields:
        kind, extra, meaning, optional = _unwrap(f.type)
        if "env" not in extra:
            raise TypeError(f"{struct.__name__}.{f.name} names no environment variable: annotate it with variable()")
        found.append(
            Variable(
                field=f.name,
                name=extra["env"],
                meaning=meaning,
                unset=extra.get("unset"),
                required=f.required,
                default=f.default,
                optional=optional,
                kind=kind,
                written=extra.get("written"),
                schemes=tuple(extra.get("schemes", ())),
                hint=hints[f.name],
            )
        )
    return tuple(found)


def _unwrap(t: mi.Type) -> tuple[mi.Type, dict[str, Any], str, bool]:
    """The type inside metadata and `| None`, the metadata's extras merged, the description, and if None may be."""
    extra: dict[str, Any] = {}
    meaning = ""
    optional = False
    while True:
        if isinstance(t, mi.Metadata):
            extra.update(t.extra or {})
            meaning = (t.extra_json_schema or {}).get("description", meaning)
            t = t.type
        elif isinstance(t, mi.UnionType) and any(isinstance(m, mi.NoneType) for m in t.types):
            (t,) = [m for m in t.types if not isinstance(m, mi.NoneType)]
            optional = True
        else:
            return t, extra, meaning, optional


def read_settings(struct: type[_S], env: Mapping[str, str]) -> _S:
    """Every field from its variable; a field whose variable is absent keeps its one default."""
    given: dict[str, Any] = {}
    for v in variables(struct):
        raw = env.get(v.name)  # every variable is asked for: the deployment test records which are known
        if raw is not None:
            given[v.field] = read_value(v, raw)
        elif v.required:
            raise ConfigError(_not_set(v))
    return struct(**given)


def read_one(struct: type[msgspec.Struct], field: str, env: Mapping[str, str]) -> Any:
    """One field, read as `read_settings` reads it."""
    (v,) = [v for v in variables(struct) if v.field == field]
    raw = env.get(v.name)
    if raw is None:
        if v.required:
            raise ConfigError(_not_set(v))
        return v.default
    return read_value(v, raw)


def read_value(v: Variable, raw: str) -> Any:
    """A variable's text as its field's value, checked against the field's type and constraints."""
    if v.optional and not raw:
        return None
    value: Any = raw
    if v.written == "duration":
        value = _duration(v.name, raw)
    elif v.written == "networks":
        value = _networks(v.name, raw)
    elif v.written == "texts":
        value = tuple(part.strip() for part in raw.split(";") if part.strip())
    elif isinstance(v.kind, mi.IntType):
        value = _number(v.name, raw, int, "a whole number")
    elif isinstance(v.kind, mi.FloatType):
        value = _number(v.name, raw, float, "a number")
    elif v.schemes and not raw:
        raise ConfigError(_not_set(v))
    if v.written == "base URL":
        value = value.rstrip("/")
    try:
        return msgspec.convert(value, v.hint, dec_hook=_from_text)
    except msgspec.ValidationError:
        raise ConfigError(_expected(v)) from None


def _from_text(kind: type, obj: Any) -> Any:
    if kind is Path and isinstance(obj, str):
        return Path(obj)
    raise NotImplementedError  # msgspec's dec_hook protocol: "not a type I convert", reported as a ValidationError


def _not_set(v: Variable) -> str:
    return f"{v.name} is not set" + (f"; expected a URL like {v.schemes[0]}://…" if v.schemes else "")


def _expected(v: Variable) -> str:
    if v.schemes:
        return f"{v.name} must be a {' or '.join(v.schemes)}:// URL"
    if isinstance(v.kind, mi.IntType | mi.FloatType):
        return f"{v.name} must be between {v.kind.ge} and {v.kind.le}"
    return f"{v.name} must be {accepted(v)}"


_N = TypeVar("_N", int, float)


def _number(name: str, raw: str, kind: type[_N], what: str) -> _N:
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, not {raw!r}") from None


def _networks(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or CIDR ranges, each checked; an empty value means none."""
    found: list[str] = []
    for part in raw.split(","):
        if not part.strip():
            continue
        try:
            found.append(str(ip_network(part.strip(), strict=False)))
        except ValueError:
            raise ConfigError(
                f"{name} must list IP addresses or ranges like 10.0.0.0/8, not {part.strip()!r}"
            ) from None
    return tuple(found)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(name: str, raw: str) -> int:
    """Seconds, written as `90`, `90s`, `15m`, `24h` or `2d`."""
    text = raw.strip().lower()
    unit = _UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    if not number.isdigit() or int(number) == 0:
        raise ConfigError(f"{name} must be a duration like 90s, 15m, 24h or 2d, not {raw!r}")
    return int(number) * (unit or 1)


def duration_text(seconds: float) -> str:
    """`24h` for 86400: the largest unit of which the duration is a whole number of at least two (`60s`, not `1m`)."""
    for unit, size in sorted(_UNITS.items(), key=lambda u: -u[1]):
        if seconds % size == 0 and seconds // size >= 2:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def accepted(v: Variable) -> str:
    """What a variable accepts, in words, from its type and constraints."""
    if v.written == "duration":
        return "a duration: `90` (seconds), `90s`, `15m`, `24h`, `2d`"
    if v.written == "networks":
        return "IP addresses or CIDR ranges, comma-separated"
    if v.written == "texts":
        return "texts, semicolon-separated"
    if v.schemes:
        *first, last = [f"`{s}://`" for s in v.schemes]
        return "a " + (", ".join(first) + " or " if first else "") + last + " URL"
    if isinstance(v.kind, mi.IntType | mi.FloatType):
        what = "a whole number" if isinstance(v.kind, mi.IntType) else "a number"
        return f"{what}, {v.kind.ge}–{v.kind.le}"
    if isinstance(v.kind, mi.CustomType) and v.kind.cls is Path:
        return "a folder"
    return "text"


def default_text(v: Variable) -> str | None:
    """The default as it would be written in the environment; None when there is none (required or unset)."""
    if v.required or v.default in (None, ()):
        return None
    if v.written == "duration":
        return duration_text(v.default)
    return str(v.default)


def markdown_table(struct: type[msgspec.Struct]) -> str:
    """One row per variable: its default, what it accepts and what it means, in the struct's order."""
    rows = ["| variable | default | accepted | meaning |", "|---|---|---|---|"]
    for v in variables(struct):
        default = default_text(v)
        if default is not None:
            shown = f"`{default}`"
        else:
            shown = "— (required)" if v.required else "—" + (f" ({v.unset})" if v.unset else "")
        meaning = v.meaning.replace("|", "\\|")  # a pipe would end the cell
        rows.append(f"| `{v.name}` | {shown} | {accepted(v)} | {meaning} |")
    return "\n".join(rows) + "\n"
