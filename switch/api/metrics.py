"""``GET /metrics``: the Prometheus scrape endpoint, optionally behind a bearer token; and the
instrumentation of the payment service's answers (authorizations, replays, idempotency conflicts,
the operations page's figures)."""

from __future__ import annotations

import functools
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from switch.api.errors import ApiError
from switch.errors import PaymentError
from switch.metrics import Metrics, exposition
from switch.ops_stats import OpsStats

_CONFLICT_KINDS = {"conflict": "in_use", "idempotency_mismatch": "body_mismatch"}


@get("/metrics", summary="Prometheus metrics", tags=["operations"], include_in_schema=True)
async def metrics(request: Request) -> Response[bytes]:
    """Expose the collectors in the Prometheus text format (summed over workers in multiprocess mode)."""
    token: str = request.app.state.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise ApiError(401, "authentication_error", "invalid_scrape_token", "a valid scrape token is required")
    return Response(
        content=generate_latest(exposition(request.app.state.metrics)), media_type=CONTENT_TYPE_LATEST, status_code=200
    )


class _MethodView(msgspec.Struct):
    type: str = "unknown"


class _DeclineView(msgspec.Struct):
    code: str = "unknown"


class _PaymentView(msgspec.Struct):
    """The few fields of an answered payment that metrics read (everything else is skipped)."""

    status: str = "unknown"
    currency: str = ""
    provider: str | None = None
    payment_method: _MethodView = msgspec.field(default_factory=_MethodView)
    decline: _DeclineView | None = None


_view = msgspec.json.Decoder(_PaymentView)


def _counted(metrics: Metrics, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap an idempotent service call: count replays and Idempotency-Key conflicts."""

    @functools.wraps(call)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            response = await call(*args, **kwargs)
        except PaymentError as error:
            kind = _CONFLICT_KINDS.get(error.kind)
            if kind is not None:
                metrics.idempotency_conflicts.labels(kind).inc()
            raise
        if getattr(response, "replayed", False):
            metrics.idempotent_replays.inc()
        return response

    return wrapper


def instrument_payment_service(service: Any, metrics: Metrics, ops: OpsStats) -> None:
    """Observe the service's answers without touching its code.

    Authorizations feed ``switch_authorizations_total``, ``switch_authorization_duration_seconds``
    and the operations page; capture, void and refund count replays and conflicts. When the payment
    path calls ``Metrics.observe_authorization`` and ``OpsStats.record_authorization`` itself, drop
    this function's call in ``switch/app.py`` so nothing is counted twice.
    """
    authorize = _counted(metrics, service.create_payment)

    @functools.wraps(service.create_payment)
    async def create_payment(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        response = await authorize(*args, **kwargs)
        if not response.replayed and response.status_code < 300:
            elapsed = time.perf_counter() - started
            try:
                payment = _view.decode(response.body)
            except msgspec.DecodeError:
                return response
            account = payment.provider or "none"
            method = payment.payment_method.type
            metrics.observe_authorization(account, method, payment.currency, payment.status, elapsed)
            code = payment.decline.code if payment.decline is not None else None
            ops.record_authorization(account, method, payment.status, code, elapsed)
        return response

    service.create_payment = create_payment
    for name in ("capture", "void", "refund"):
        setattr(service, name, _counted(metrics, getattr(service, name)))
