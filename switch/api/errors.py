"""Stripe-style error objects for every failure, and the exception handlers that produce them."""

from __future__ import annotations

import logging
import re

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from switch.errors import PaymentError

logger = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()
_PATH = re.compile(r" - at (?:`key` in )?`\$((?:\.[^`\[]+|\[[^\]]*\])*)`$")
_FIELD = re.compile(r"field `([^`]+)`")


class ApiError(Exception):
    """An error answered as ``{"error": {...}}`` with ``status_code``."""

    def __init__(self, status_code: int, type_: str, code: str, message: str, param: str | None = None) -> None:
        """Build the error; ``type_`` is the Stripe error type (``invalid_request_error``, ...)."""
        super().__init__(message)
        self.status_code = status_code
        self.type = type_
        self.code = code
        self.message = message
        self.param = param


def error_response(status_code: int, type_: str, code: str, message: str, param: str | None = None) -> Response[bytes]:
    """Return the JSON error response."""
    body = {"error": {"type": type_, "code": code, "message": message, "param": param}}
    return Response(content=_ENCODER.encode(body), status_code=status_code, media_type="application/json")


_KIND_STATUS = {
    "invalid": (400, "invalid_request_error"),
    "amount": (400, "invalid_request_error"),
    "not_found": (404, "invalid_request_error"),
    "state": (409, "invalid_request_error"),
    "conflict": (409, "idempotency_error"),
    "idempotency_mismatch": (422, "idempotency_error"),
    "unavailable": (503, "api_error"),
    "provider": (502, "api_error"),
}


def from_payment_error(error: PaymentError) -> ApiError:
    """Map a domain refusal to its HTTP status and error type."""
    status, type_ = _KIND_STATUS[error.kind]
    if error.code == "payment_concurrently_modified":
        type_ = "invalid_request_error"
    return ApiError(status, type_, error.code, error.message, error.param)


def from_decode_error(error: msgspec.DecodeError) -> ApiError:
    """Turn a msgspec decoding failure into a 400 naming the offending field."""
    message = str(error)
    if not isinstance(error, msgspec.ValidationError):
        return ApiError(400, "invalid_request_error", "invalid_json", "the request body is not valid JSON", None)
    path = ""
    match = _PATH.search(message)
    if match:
        path = match.group(1)
        message = message[: match.start()]
    param = ".".join(part for part in re.split(r"\.|\[|\]", path) if part) or None
    field = _FIELD.search(message)
    if field and ("unknown field" in message or "missing required field" in message):
        param = f"{param}.{field.group(1)}" if param else field.group(1)
    if "unknown field" in message:
        code = "parameter_unknown"
    elif "missing required field" in message:
        code = "parameter_missing"
    else:
        code = "parameter_invalid"
    return ApiError(400, "invalid_request_error", code, message.replace("`", "'"), param)


def handle_api_error(_: Request, exc: ApiError) -> Response[bytes]:
    """Exception handler for :class:`ApiError`."""
    return error_response(exc.status_code, exc.type, exc.code, exc.message, exc.param)


def handle_payment_error(_: Request, exc: PaymentError) -> Response[bytes]:
    """Exception handler for domain refusals; a 503 says when to retry (with the same key)."""
    response = handle_api_error(_, from_payment_error(exc))
    if exc.kind == "unavailable":
        response.headers["Retry-After"] = "1"
    return response


def handle_http_exception(_: Request, exc: HTTPException) -> Response[bytes]:
    """Routing and framework errors (404 route, 405, 413, bad query) as error objects."""
    status = exc.status_code
    if isinstance(exc, ValidationException) or status == 400:
        return error_response(400, "invalid_request_error", "parameter_invalid", _framework_detail(exc), None)
    codes = {
        401: ("authentication_error", "authentication_required"),
        403: ("permission_error", "forbidden"),
        404: ("invalid_request_error", "resource_missing"),
        405: ("invalid_request_error", "method_not_allowed"),
        413: ("invalid_request_error", "body_too_large"),
        415: ("invalid_request_error", "unsupported_media_type"),
        429: ("rate_limit_error", "rate_limited"),
    }
    type_, code = codes.get(status, ("api_error" if status >= 500 else "invalid_request_error", "request_failed"))
    messages = {
        404: "no such endpoint",
        405: "this method is not allowed on this endpoint",
        413: "the request body is too large",
    }
    return error_response(status, type_, code, messages.get(status, _framework_detail(exc)), None)


def _framework_detail(exc: HTTPException) -> str:
    detail = exc.detail or "the request could not be processed"
    extra = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        key = extra[0].get("key")
        message = extra[0].get("message", "")
        if key:
            return f"{key}: {message}"
    return str(detail)


def handle_unexpected(_: Request, exc: Exception) -> Response[bytes]:
    """Last resort: log the type (never the request) and answer a bare 500 error object."""
    logger.error("unhandled %s while serving a request", type(exc).__name__, exc_info=exc)
    return error_response(500, "api_error", "internal_error", "an internal error occurred; it has been logged")
