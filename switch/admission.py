"""Admission control: a bound on payment mutations in flight per worker, and a deadline on bodies.

A worker that takes every request under overload queues them (at the ledger writer, at the
provider's connection pool) until every request is slow. Instead, at most ``limit`` payment
mutations (``POST /v1/payments`` and its capture, void and refund) run at once in one worker;
the next one is answered ``503 api_error`` ``code: "overloaded"`` with ``Retry-After`` at once,
before its body is read, so the requests admitted keep their latency. Nothing of a shed request
was written: its retry with the same Idempotency-Key runs as new.

Every request body must also arrive within ``body_timeout_s`` of its first byte being awaited;
a client that trickles its body (slowloris) is answered ``408 request_timeout`` instead of
holding a slot forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from switch.api.errors import RETRY_AFTER_S, ApiError

_ENCODER = msgspec.json.Encoder()
_OVERLOADED = _ENCODER.encode(
    {
        "error": {
            "type": "api_error",
            "code": "overloaded",
            "message": "the switch is at capacity; nothing was done, retry shortly with the same Idempotency-Key",
            "param": None,
        }
    }
)
_OVERLOADED_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_OVERLOADED)).encode()),
    (b"retry-after", str(RETRY_AFTER_S).encode()),
]


class Admission:
    """The in-flight count of one worker, and what it refused (read by tests and metrics)."""

    def __init__(self, limit: int) -> None:
        """Admit at most ``limit`` payment mutations at once."""
        self.limit = limit
        self.inflight = 0
        self.admitted = 0
        self.shed = 0

    def try_enter(self) -> bool:
        """Take a slot; False when all are taken (the caller answers 503)."""
        if self.inflight >= self.limit:
            self.shed += 1
            return False
        self.inflight += 1
        self.admitted += 1
        return True

    def leave(self) -> None:
        """Give the slot back."""
        self.inflight -= 1


def is_payment_mutation(scope: Scope) -> bool:
    """``POST /v1/payments`` and ``POST /v1/payments/{id}/...``: the requests that call a provider."""
    return scope.get("method") == "POST" and scope["path"].startswith("/v1/payments")


class BodyTimeout(ApiError):
    """The request body did not arrive in time."""

    def __init__(self, timeout_s: float) -> None:
        """Build the 408 error."""
        super().__init__(
            408, "invalid_request_error", "request_timeout", f"the request body did not arrive within {timeout_s:g} s"
        )


def _deadline_receive(receive: Receive, timeout_s: float) -> Receive:
    """``receive`` with a deadline on the whole body; once the body is complete, no deadline."""
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    complete = False

    async def receive_in_time() -> Message:
        nonlocal deadline, complete
        if complete:
            return await receive()
        if deadline is None:
            deadline = loop.time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise BodyTimeout(timeout_s) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            complete = True
        return message

    return receive_in_time


def admission_middleware(
    admission: Admission, *, body_timeout_s: float = 10.0, applies: Callable[[Scope], bool] = is_payment_mutation
) -> Callable[[ASGIApp], ASGIApp]:
    """An ASGI middleware factory: shed payment mutations beyond ``admission.limit``; bound bodies.

    Args:
        admission: The worker's in-flight count and limit.
        body_timeout_s: Longest a request body may take to arrive.
        applies: Which requests count against the limit.
    """

    def middleware(app: ASGIApp) -> ASGIApp:
        async def admitted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            bounded = _deadline_receive(receive, body_timeout_s)
            if not applies(scope):
                await app(scope, bounded, send)
                return
            if not admission.try_enter():
                await send({"type": "http.response.start", "status": 503, "headers": _OVERLOADED_HEADERS})
                await send({"type": "http.response.body", "body": _OVERLOADED})
                return
            try:
                await app(scope, bounded, send)
            finally:
                admission.leave()

        return admitted

    return middleware
