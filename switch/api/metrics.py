"""``GET /metrics``: the Prometheus scrape endpoint, optionally behind a bearer token."""

from __future__ import annotations

import hmac

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from switch.api.errors import ApiError


@get("/metrics", summary="Prometheus metrics", tags=["operations"], include_in_schema=True)
async def metrics(request: Request) -> Response[bytes]:
    """Expose the collectors in the Prometheus text format."""
    token: str = request.app.state.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise ApiError(401, "authentication_error", "invalid_scrape_token", "a valid scrape token is required")
    return Response(
        content=generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST, status_code=200
    )
