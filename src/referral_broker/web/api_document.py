"""What the OpenAPI document says that Litestar cannot see for itself: the bodies of refusals, and the JSON
Schemas of request bodies that handlers read raw (to name every wrong field, `referral_protocol.validation`)."""

from __future__ import annotations

from typing import Any, cast

import msgspec
from litestar.openapi.spec import OpenAPIMediaType, RequestBody, Schema


def inline_json_schema(type_: Any) -> dict[str, Any]:
    """msgspec's own JSON Schema of `type_`, with its definitions inlined.

    msgspec decodes the body, so its schema is what the server enforces: lengths, patterns, formats, and
    `additionalProperties: false` for every Struct with `forbid_unknown_fields`.
    """
    schema = msgspec.json.schema(type_)
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


def json_request_body(schema: dict[str, Any], description: str) -> RequestBody:
    return RequestBody(
        content={"application/json": OpenAPIMediaType(schema=cast(Schema, schema))},
        description=description,
        required=True,
    )


class FieldErrorBody(msgspec.Struct, frozen=True):
    field: str
    code: str
    message: str


class InvalidRequestBody(msgspec.Struct, frozen=True):
    """Every wrong field at once (`web/errors.invalid_request`)."""

    errors: list[FieldErrorBody]


class ErrorBody(msgspec.Struct, frozen=True):
    """A refusal with one reason (`web/errors.http_error`, `web/errors.domain_error`)."""

    error: str


class IncidentBody(msgspec.Struct, frozen=True):
    """A failure on the broker's side (`web/errors.internal_error`): quote `incident` when reporting it."""

    error: str
    incident: str
