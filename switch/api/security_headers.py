"""Security headers on every response: no sniffing, no framing, no caching, no referrer, HTTPS only.

Installed as a Litestar ``before_send`` hook, which sees every response the application sends,
also the ones no route handler produced (404, 405, 413), unlike route middleware. The API serves
JSON to programs, so the strictest values cost nothing; an HTML page that sets its own
Content-Security-Policy keeps it.
"""

from __future__ import annotations

from litestar.types import Message, Scope

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


async def add_security_headers(message: Message, scope: Scope) -> None:
    """``before_send`` hook: add each of :data:`SECURITY_HEADERS` the response does not set itself."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", []))
    present = {bytes(name).lower() for name, _ in headers}
    headers.extend((name, value) for name, value in SECURITY_HEADERS if name not in present)
    message["headers"] = headers  # type: ignore[typeddict-unknown-key]
