"""The one shared async transport every adapter calls its provider through.

One :class:`HttpTransport` per adapter instance owns one pooled keep-alive ``aiohttp`` session (so
each provider has its own pool and one slow provider cannot starve another's connections). It
applies a connect deadline and a total deadline (covering every retry), adds the provider's
idempotency header, lets the adapter sign the final bytes, and retries only when repeating the
request cannot move money twice: a GET, or a POST that carries an idempotency key the provider
honours, or a connection that was never established.

Why aiohttp and not httpx: measured with ``tests/adapters/measure_http_clients.py`` (same uvloop,
same local server, 50 concurrent keep-alive POSTs), aiohttp sustained about 11x the request rate
of httpx on this machine; see docs/providers.md for the figures.

Failures come back as exceptions the adapters turn into outcomes:

* :class:`NotSent` - provably, no try of this logical request reached the provider (every try
  failed to connect): ``technical``.
* :class:`TimedOut` - some try may have reached the provider (an answer came, a connection was
  lost after writing, the deadline struck mid-call), even if a later retry failed to connect:
  the result is ``unknown``.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import msgspec

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

_json_encoder = msgspec.json.Encoder()

# The switch's request id for the request being served (set by its HTTP middleware); sent to the
# provider so both sides' logs can be joined. Defined here because adapters import nothing of switch.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("switch_request_id", default=None)


class TransportError(Exception):
    """Base class of transport failures; messages never contain request bodies."""


class NotSent(TransportError):
    """No try of the request reached the provider (connection refused, DNS, connect timeout)."""


class TimedOut(TransportError):
    """A try of the request may have reached the provider: the outcome is unknown."""


class HttpResponse(msgspec.Struct, frozen=True):
    """A provider's HTTP answer, fully read.

    Attributes:
        status: HTTP status code.
        headers: Response headers (lower-case names).
        body: The raw body.
        attempts: How many times the request was sent (1 without retries).
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    attempts: int = 1

    def json(self) -> Any:
        """Decode the body as JSON, or return ``{}`` when it is empty or not JSON."""
        if not self.body:
            return {}
        try:
            return msgspec.json.decode(self.body)
        except msgspec.DecodeError:
            return {}


class OutgoingRequest(msgspec.Struct, kw_only=True):
    """A request as the signing hook sees it: the hook may add headers, not change the body."""

    method: str
    url: str
    path: str
    headers: dict[str, str]
    body: bytes


Signer = Callable[[OutgoingRequest], None]


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How many times to retry and how long to wait between tries.

    The wait is "full jitter" exponential backoff (uniform between 0 and
    ``min(cap, base * 2**attempt)``) so that many workers retrying after the same 503 spread out.
    A ``Retry-After`` header, when present and shorter than the cap, is honoured instead.
    """

    max_retries: int = 2
    backoff_base: float = 0.05
    backoff_cap: float = 1.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Return the wait in seconds before retry number ``attempt`` (0-based)."""
        if retry_after:
            try:
                return min(self.backoff_cap, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return random.uniform(0.0, min(self.backoff_cap, self.backoff_base * (2**attempt)))


class HttpTransport:
    """Pooled keep-alive HTTP client for one provider account.

    Args:
        provider: Provider name, for error messages.
        base_url: Scheme, host and optional path prefix; request paths are appended.
        connect_timeout: Seconds to establish a connection.
        total_timeout: Seconds for the whole call including retries and backoff.
        retry: Retry policy.
        idempotency_header: The header this provider reads the idempotency key from, or None.
        signer: Called with the final request to add authentication or signature headers.
        default_headers: Headers sent on every request (authentication, API version).
        pool_size: Maximum simultaneous connections to this provider.
        request_id_header: Header carrying :data:`REQUEST_ID` to the provider, or None for a
            provider that refuses unknown headers.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        connect_timeout: float = 2.0,
        total_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        idempotency_header: str | None = "Idempotency-Key",
        signer: Signer | None = None,
        default_headers: Mapping[str, str] | None = None,
        pool_size: int = 100,
        request_id_header: str | None = "X-Request-Id",
    ) -> None:
        """Create the transport; the session is opened on first use inside the running loop."""
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.retry = retry or RetryPolicy()
        self.idempotency_header = idempotency_header
        self.signer = signer
        self.default_headers = dict(default_headers or {})
        self.pool_size = pool_size
        self.request_id_header = request_id_header
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.pool_size, keepalive_timeout=30.0, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                # The total deadline is enforced around all attempts, not per attempt.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
                auto_decompress=True,
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        """Close the pooled connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: Mapping[str, str] | list[tuple[str, str]] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        retry_safe: bool | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        """Send one logical request, retrying where that is safe, within the total deadline.

        Args:
            method: HTTP method.
            path: Path appended to ``base_url`` (may carry a query string).
            json: A value to send as a JSON body.
            form: Pairs to send form-encoded.
            content: Raw body bytes.
            content_type: Content type for ``content``.
            headers: Extra headers for this request.
            idempotency_key: Sent in the provider's idempotency header; makes a POST retry-safe.
            retry_safe: Override the retry decision (None: GET/HEAD or keyed requests retry).
            timeout: Override the total deadline in seconds.

        Returns:
            The last response received (possibly a 5xx/429 after retries ran out).

        Raises:
            NotSent: When provably no try reached the provider.
            TimedOut: When any try may have reached the provider and no answer is returned.
        """
        body, ctype = _encode_body(json, form, content, content_type)
        hdrs = dict(self.default_headers)
        if ctype:
            hdrs["Content-Type"] = ctype
        if headers:
            hdrs.update(headers)
        if idempotency_key and self.idempotency_header:
            hdrs[self.idempotency_header] = idempotency_key
        request_id = REQUEST_ID.get()
        if request_id and self.request_id_header:
            hdrs.setdefault(self.request_id_header, request_id)
        if retry_safe is None:
            retry_safe = method.upper() in {"GET", "HEAD"} or bool(idempotency_key and self.idempotency_header)
        url = self.base_url + path
        outgoing = OutgoingRequest(method=method.upper(), url=url, path=path, headers=hdrs, body=body)
        if self.signer is not None:
            self.signer(outgoing)
        deadline = time.monotonic() + (timeout if timeout is not None else self.total_timeout)
        return await self._send_with_retries(outgoing, deadline, retry_safe)

    async def _send_with_retries(self, outgoing: OutgoingRequest, deadline: float, retry_safe: bool) -> HttpResponse:
        attempt = 0
        # Once any try may have reached the provider, no later failure can prove that nothing
        # happened: a retry that cannot connect says nothing about the try before it.
        maybe_sent = False

        def failure(message: str) -> TransportError:
            return (TimedOut if maybe_sent else NotSent)(f"{self.provider}: {message}")

        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise failure("deadline passed")
            try:
                response = await _with_deadline(self._send_once(outgoing, attempt + 1), remaining)
            except NotSent as exc:
                # This try never left the machine, so a retry is safe whatever the method.
                if attempt >= self.retry.max_retries:
                    raise failure(str(exc).removeprefix(f"{self.provider}: ")) from None
            except TimeoutError:
                # The deadline may have struck after the request was written.
                maybe_sent = True
                raise TimedOut(f"{self.provider}: no answer within the deadline") from None
            except TimedOut:
                maybe_sent = True
                if not retry_safe or attempt >= self.retry.max_retries:
                    raise
            else:
                # An answer, whatever its status, means this try was delivered and may have been
                # processed (a 503 from a gateway can hide a processed request).
                maybe_sent = True
                if response.status not in RETRYABLE_STATUSES or not retry_safe or attempt >= self.retry.max_retries:
                    return response
                delay = self.retry.delay(attempt, response.headers.get("retry-after"))
                if time.monotonic() + delay >= deadline:
                    return response
                await asyncio.sleep(delay)
                attempt += 1
                continue
            delay = self.retry.delay(attempt)
            if time.monotonic() + delay >= deadline:
                raise failure("deadline passed")
            await asyncio.sleep(delay)
            attempt += 1

    async def _send_once(self, outgoing: OutgoingRequest, attempt_number: int) -> HttpResponse:
        session = self._get_session()
        try:
            async with session.request(
                outgoing.method, outgoing.url, data=outgoing.body or None, headers=outgoing.headers
            ) as resp:
                data = await resp.read()
                headers = {k.lower(): v for k, v in resp.headers.items()}
                return HttpResponse(resp.status, headers, data, attempt_number)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise NotSent(f"{self.provider}: could not connect ({type(exc).__name__})") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            # The connection dropped after the request may have been written.
            raise TimedOut(f"{self.provider}: connection lost ({type(exc).__name__})") from None


async def _with_deadline(awaitable: Awaitable[HttpResponse], seconds: float) -> HttpResponse:
    async with asyncio.timeout(seconds):
        return await awaitable


def _encode_body(
    json: Any,
    form: Mapping[str, str] | list[tuple[str, str]] | None,
    content: bytes | None,
    content_type: str | None,
) -> tuple[bytes, str | None]:
    if json is not None:
        return _json_encoder.encode(json), "application/json"
    if form is not None:
        from urllib.parse import urlencode

        return urlencode(list(form.items()) if isinstance(form, Mapping) else form).encode(), (
            "application/x-www-form-urlencoded"
        )
    if content is not None:
        return content, content_type or "application/octet-stream"
    return b"", None
