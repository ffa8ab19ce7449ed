"""Structured logs and request ids.

Every HTTP request gets a request id: the caller's ``X-Request-Id`` when it is safe (1 to 128
characters of letters, digits and ``-_.:``), a fresh one otherwise. It is returned in the
response's ``X-Request-Id``, put on every log line written while the request is served (a
contextvar read by a logging filter), and sent to providers (``adapters._http.REQUEST_ID``).

``SWITCH_LOG_FORMAT``: ``text`` (one readable line), ``json`` (one JSON object per line), or
``auto`` (the default): text when stderr is a terminal, JSON otherwise.
"""

from __future__ import annotations

import datetime
import logging
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

import msgspec

from adapters._http import REQUEST_ID

LogFormat = Literal["auto", "text", "json"]
LOG_FORMATS: tuple[str, ...] = ("auto", "text", "json")
REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_encoder = msgspec.json.Encoder()
_access = logging.getLogger("switch.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    return REQUEST_ID.get()


def accept_request_id(given: str | None) -> str:
    """Return ``given`` when it is a safe request id, else a new one."""
    if given and _SAFE_ID.fullmatch(given):
        return given
    return "req_" + secrets.token_hex(12)


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` (``"-"`` outside a request) on every record a handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record``; never drops it."""
        record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, ``request_id``, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record``."""
        entry: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get() or "-",
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


def resolve_format(log_format: str, stream: Any = None) -> Literal["text", "json"]:
    """Turn ``auto`` into ``text`` on a terminal and ``json`` elsewhere.

    Raises:
        ValueError: For a name other than auto, text or json.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    if log_format == "auto":
        target = stream if stream is not None else sys.stderr
        return "text" if getattr(target, "isatty", lambda: False)() else "json"
    return log_format  # type: ignore[return-value]


def build_handler(log_format: str, stream: Any = None) -> logging.Handler:
    """A stream handler with the request-id filter and the chosen formatter."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RequestIdFilter())
    if resolve_format(log_format, stream) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    return handler


def configure_logging(level: str, log_format: str) -> None:
    """Send every logger (the switch's and uvicorn's) to one handler on stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(build_handler(log_format))
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def uvicorn_log_config(level: str, log_format: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn that routes its loggers through the same format."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if resolve_format(log_format) == "json" else {"format": _TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"switch": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "switch",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
        },
    }


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: accept or make the request id, bind it for the request, return it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        given = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = accept_request_id(given)
        header = (b"x-request-id", request_id.encode("ascii"))
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await app(scope, receive, send_with_id)
        finally:
            # Only at DEBUG: a log line per request costs more than the rest of the hot path's logging.
            if _access.isEnabledFor(logging.DEBUG):
                _access.debug(
                    "%s %s %d %.1fms", scope["method"], scope["path"], status, (time.perf_counter() - started) * 1000
                )
            REQUEST_ID.reset(token)

    return middleware
