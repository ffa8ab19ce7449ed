"""The live operations page: ``GET /dashboard`` (HTML) and ``GET /dashboard/data`` (JSON it polls).

Both need the operator token (``SWITCH_OPERATOR_TOKEN``; generated and printed at start when
unset): as ``Authorization: Bearer <token>``, or once as ``/dashboard?token=<token>``, which sets
an HttpOnly cookie scoped to ``/dashboard`` and redirects to the bare URL so the token does not
stay in the address bar or the history. The data is computed from in-memory aggregates
(:class:`switch.ops_stats.OpsStats` and the recovery gauges), never from a database query.
"""

from __future__ import annotations

import hmac
import pathlib
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import Cookie

from switch.api.errors import ApiError
from switch.ops_stats import Unresolved

COOKIE = "switch_operator"
_PAGE = (pathlib.Path(__file__).parent / "static" / "dashboard.html").read_bytes()
_encoder = msgspec.json.Encoder()


def _given_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ")
    return request.cookies.get(COOKIE, "")


def _valid(request: Request, given: str) -> bool:
    expected: str = request.app.state.operator_token
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _refused() -> ApiError:
    return ApiError(
        401, "authentication_error", "invalid_operator_token", "open /dashboard?token=<operator token> first"
    )


def _gauge_value(gauge: Any) -> float:
    for family in gauge.collect():
        for sample in family.samples:
            return float(sample.value)
    return 0.0


@get("/dashboard", summary="Live operations page", tags=["operations"], include_in_schema=False)
async def dashboard_page(request: Request) -> Response[bytes]:
    """Serve the page; a valid ``?token=`` becomes a cookie and redirects to the bare URL."""
    token = request.query_params.get("token")
    if token is not None:
        if not _valid(request, token):
            raise _refused()
        return Response(
            content=b"",
            status_code=303,
            headers={"Location": "/dashboard", "Cache-Control": "no-store"},
            cookies=[Cookie(key=COOKIE, value=token, path="/dashboard", httponly=True, samesite="strict")],
        )
    if not _valid(request, _given_token(request)):
        raise _refused()
    return Response(
        content=_PAGE,
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'self' 'unsafe-inline'"},
    )


@get("/dashboard/data", summary="Live operations figures", tags=["operations"], include_in_schema=False)
async def dashboard_data(request: Request) -> Response[bytes]:
    """The page's figures: throughput, approval rate and latency per account, declines, unresolved."""
    if not _valid(request, _given_token(request)):
        raise _refused()
    state = request.app.state
    metrics = state.metrics
    # Recovery refreshes these gauges from the database every pass; reading them costs nothing.
    unresolved = Unresolved(
        count=int(_gauge_value(metrics.unresolved_intents)),
        stuck=int(_gauge_value(metrics.stuck_intents)),
        oldest_age_s=int(_gauge_value(metrics.oldest_unresolved_seconds)),
    )
    body = _encoder.encode(state.ops.snapshot(unresolved))
    return Response(content=body, media_type="application/json", headers={"Cache-Control": "no-store"})
