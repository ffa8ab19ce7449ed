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
    Link,
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


def link_to(method: str, path: str, **parameters: str) -> Link:
    """Return an OpenAPI link to the operation ``method path`` with runtime-expression ``parameters``.

    Args:
        method: The target's HTTP method, any case.
        path: The target's path template, e.g. ``/v1/payments/{payment_id}/capture``.
        **parameters: Target parameter name to a runtime expression such as ``$response.body#/id``.
    """
    pointer = path.replace("~", "~0").replace("/", "~1")
    return Link(operation_ref=f"#/paths/{pointer}/{method.lower()}", parameters=dict(parameters))


def operation_with_body(
    struct: type, *, answer: type | None = None, links: dict[str, Link] | None = None
) -> type[Operation]:
    """Return an ``operation_class`` whose request body is a JSON ``struct``.

    Args:
        struct: The msgspec Struct the handler decodes its body into.
        answer: The Struct its success (2xx) body encodes, when the handler answers raw bytes.
        links: OpenAPI links from its success response to the operations that can follow it.
    """
    return _operation_class(struct, answer, links)


def operation_answering(answer: type, *, links: dict[str, Link] | None = None) -> type[Operation]:
    """Return an ``operation_class`` without a request body whose success body is ``answer``."""
    return _operation_class(None, answer, links)


def _operation_class(body: type | None, answer: type | None, links: dict[str, Link] | None) -> type[Operation]:
    request = Reference(ref=_REF.format(name=body.__name__)) if body is not None else None
    response = Reference(ref=_REF.format(name=answer.__name__)) if answer is not None else None

    class _Documented(Operation):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if request is not None and self.request_body is None:
                self.request_body = RequestBody(
                    content={"application/json": OpenAPIMediaType(schema=request)}, required=True
                )
            for status, documented in (self.responses or {}).items():
                if not str(status).startswith("2") or isinstance(documented, Reference):
                    continue
                # Handlers answering pre-encoded bytes are documented by Litestar as a bare string.
                if response is not None and documented.content and "application/json" in documented.content:
                    documented.content["application/json"] = OpenAPIMediaType(schema=response)
                if links:
                    documented.links = {**(documented.links or {}), **links}

    names = [cls.__name__ for cls in (body, answer) if cls is not None]
    _Documented.__name__ = "OperationWith" + "And".join(names)
    return _Documented
