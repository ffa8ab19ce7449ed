"""Stripe-style error objects for every failure, and the exception handlers that produce them."""

from __future__ import annotations

import logging
import re

import asyncpg
import msgspec
import redis.exceptions
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.spec import OpenAPI, OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Schema

from switch.errors import PaymentError
from switch.vault.redaction import mask_pans

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
    """Return the JSON error response (a card number echoed from the request is masked)."""
    message, param = mask_pans(message), mask_pans(param) if param else param
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
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
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
    """Last resort: log the type (never the request) and answer a bare 500 error object.

    A dependency failure wrapped in another exception (``__cause__``) is still a 503.
    """
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, DEPENDENCY_ERRORS) and not isinstance(exc, AssertionError):
        return handle_dependency_error(_, cause)
    logger.error("unhandled %s while serving a request", type(exc).__name__, exc_info=exc)
    return error_response(500, "api_error", "internal_error", "an internal error occurred; it has been logged")


#: Retry-After (seconds) of every 503 the switch answers for its own dependencies or load.
RETRY_AFTER_S = 1

#: Failures of the database or Redis that say nothing about the request: the dependency is down,
#: unreachable, restarting or too slow. Class 08 (connection) and 57 (operator intervention:
#: shutdown, restart, a statement cancelled by its deadline) of PostgreSQL, the client's own
#: interface errors, and network errors and deadlines.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
)
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, *REDIS_ERRORS, OSError, TimeoutError)


def unavailable_response(code: str, message: str) -> Response[bytes]:
    """A ``503 api_error`` with ``Retry-After``: nothing new was acknowledged; retry with the same key."""
    response = error_response(503, "api_error", code, message)
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def handle_dependency_error(_: Request, exc: Exception) -> Response[bytes]:
    """Exception handler for :data:`DEPENDENCY_ERRORS`: 503 naming the dependency, never a 500.

    A write whose commit is unknown never reaches here (the writer raises ``LedgerUnavailable``);
    these are reads and look-ups, so answering 503 acknowledges nothing.
    """
    if isinstance(exc, REDIS_ERRORS):
        code, what = "redis_unavailable", "Redis"
    else:
        code, what = "database_unavailable", "the database"
    logger.warning("%s failed while serving a request: %s", what, type(exc).__name__)
    return unavailable_response(code, f"{what} did not answer in time; retry shortly (with the same Idempotency-Key)")


_TEXT = Schema(type=OpenAPIType.STRING)
ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["type", "code", "message", "param"],
            properties={
                "type": _TEXT,
                "code": _TEXT,
                "message": _TEXT,
                "param": Schema(one_of=[_TEXT, Schema(type=OpenAPIType.NULL)]),
            },
        )
    },
)


def document_error_responses(document: OpenAPI) -> None:
    """Describe every documented 4xx/5xx as the error object the handlers above really send.

    The framework documents its own default error shape, which the switch never answers; a client
    (or a fuzzer) validating responses against the document must see the real one.
    """
    for item in (document.paths or {}).values():
        for operation in (item.get, item.put, item.post, item.delete, item.patch):
            if operation is None or not operation.responses:
                continue
            for status, response in operation.responses.items():
                if status[:1] in ("4", "5") and isinstance(response, OpenAPIResponse):
                    response.content = {"application/json": OpenAPIMediaType(schema=ERROR_SCHEMA)}
