"""OpenAPI documentation of the request and response bodies.

The payment handlers decode raw bytes with msgspec themselves (for precise error objects and the
idempotency body hash), so Litestar cannot see their body types. This module turns msgspec's own
JSON Schema of those Structs into OpenAPI components and attaches them to each operation.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar.openapi.spec import (
    Components,
    Discriminator,
    OpenAPIMediaType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)

_REF = "#/components/schemas/{name}"
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_RENAMED = {"not": "schema_not", "if": "schema_if", "else": "schema_else"}


def _field_name(key: str) -> str:
    return _RENAMED.get(key, _CAMEL.sub("_", key).lower())


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return Reference(ref=node["$ref"])
    fields: dict[str, Any] = {}
    for key, value in node.items():
        name = _field_name(key)
        if key == "properties":
            fields[name] = {prop: _convert(schema) for prop, schema in value.items()}
        elif key == "discriminator":
            fields[name] = Discriminator(property_name=value["propertyName"], mapping=value.get("mapping"))
        elif key in ("additionalProperties", "items", "anyOf", "oneOf", "allOf"):
            fields[name] = _convert(value)
        else:
            fields[name] = value
    return Schema(**fields)


def components_for(*types: type) -> Components:
    """Return the OpenAPI components describing ``types`` and everything they reference."""
    _, definitions = msgspec.json.schema_components(types, ref_template=_REF)
    return Components(schemas={name: _convert(schema) for name, schema in definitions.items()})


def operation_with_body(struct: type) -> type[Operation]:
    """Return an ``operation_class`` whose request body is a JSON ``struct``."""
    reference = Reference(ref=_REF.format(name=struct.__name__))

    class _WithBody(Operation):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.request_body is None:
                self.request_body = RequestBody(
                    content={"application/json": OpenAPIMediaType(schema=reference)}, required=True
                )

    _WithBody.__name__ = f"OperationWith{struct.__name__}"
    return _WithBody
