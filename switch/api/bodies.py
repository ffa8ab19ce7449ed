"""Decoding JSON request bodies into Structs, with errors that name the offending field."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from switch.api.errors import ApiError, from_decode_error

T = TypeVar("T")

_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}


def decode_body(body: bytes, cls: type[T]) -> T:
    """Decode ``body`` as ``cls`` (unknown fields refused).

    Raises:
        ApiError: 400 ``parameter_missing`` for an empty body, or the decode error naming the field.
    """
    if not body.strip():
        raise ApiError(400, "invalid_request_error", "parameter_missing", "a JSON request body is required", None)
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = msgspec.json.Decoder(cls)
    try:
        return decoder.decode(body)  # type: ignore[no-any-return]
    except msgspec.DecodeError as exc:
        raise from_decode_error(exc) from None
