"""Rate limits per secret key: a token bucket, in memory for one worker or in Redis for many.

Each key's bucket holds ``burst`` tokens and refills at ``rate_per_s``; every ``/v1`` request
(GETs included) takes one. Beyond it the answer is ``429 rate_limit_error`` with
``Retry-After`` in whole seconds. In Redis the bucket is read, refilled, taken from and written
by one Lua script: one round trip, atomic across workers. Buckets are named by a hash of the key,
never the key. If Redis cannot answer, requests pass (payments matter more than the limit) and
the failure is logged.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis
from litestar.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then tokens = burst; at = now end
if now > at then tokens = math.min(burst, tokens + (now - at) * rate / 1000) else now = at end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class TokenBuckets(abc.ABC):
    """Buckets of tokens, one per name."""

    def __init__(self, rate_per_s: int, burst: int) -> None:
        """Buckets refilling at ``rate_per_s`` up to ``burst``."""
        if rate_per_s < 1 or burst < 1:
            raise ValueError("rate and burst must be at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst

    @abc.abstractmethod
    async def take(self, name: str, now_ms: int) -> int:
        """Take one token from ``name``; return 0 when taken, else milliseconds until one is there."""

    async def close(self) -> None:  # noqa: B027 - memory buckets hold no connection
        """Release connections."""


class MemoryBuckets(TokenBuckets):
    """Buckets of one process (the least recently used are forgotten beyond ``max_buckets``)."""

    def __init__(self, rate_per_s: int, burst: int, *, max_buckets: int = 100_000) -> None:
        """Create empty buckets."""
        super().__init__(rate_per_s, burst)
        self._buckets: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._max = max_buckets

    async def take(self, name: str, now_ms: int) -> int:
        """Refill by elapsed time, then take one token if there is one."""
        tokens, at = self._buckets.get(name, (float(self.burst), now_ms))
        if now_ms > at:
            tokens = min(float(self.burst), tokens + (now_ms - at) * self.rate_per_s / 1000)
            at = now_ms
        wait = 0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = math.ceil((1 - tokens) * 1000 / self.rate_per_s)
        self._buckets[name] = (tokens, at)
        self._buckets.move_to_end(name)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait


class RedisBuckets(TokenBuckets):
    """Buckets shared by every worker through Redis, one script call per request."""

    def __init__(self, url: str, rate_per_s: int, burst: int, *, prefix: str = "switch:rl:") -> None:
        """Connect lazily to ``url``; buckets are named under ``prefix``."""
        super().__init__(rate_per_s, burst)
        self._client = aioredis.Redis.from_url(url, decode_responses=False)
        self._prefix = prefix
        self._take = self._client.register_script(_TAKE_SCRIPT)

    async def take(self, name: str, now_ms: int) -> int:
        """Run the bucket script; on a Redis failure let the request through."""
        try:
            return int(await self._take(keys=[self._prefix + name], args=[self.rate_per_s, self.burst, now_ms]))
        except Exception as exc:  # an unavailable limiter must not take payments down with it
            logger.warning("rate limiter unavailable, request allowed: %s", type(exc).__name__)
            return 0

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


_ENCODER = msgspec.json.Encoder()


def _too_many(wait_ms: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    retry_after = max(1, math.ceil(wait_ms / 1000))
    body = _ENCODER.encode(
        {
            "error": {
                "type": "rate_limit_error",
                "code": "rate_limited",
                "message": f"too many requests with this API key; retry in {retry_after} s",
                "param": None,
            }
        }
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
    ]
    return body, headers


def bucket_name(authorization: bytes) -> str | None:
    """The bucket of a request's ``Authorization`` header value: a hash of its bearer key."""
    scheme, _, key = authorization.partition(b" ")
    key = key.strip()
    if scheme.lower() != b"bearer" or not key:
        return None
    return hashlib.sha256(key).hexdigest()[:32]


def rate_limit_middleware(
    buckets: TokenBuckets, *, path_prefix: str = "/v1/", clock: Callable[[], float] = time.time
) -> Callable[[ASGIApp], ASGIApp]:
    """An ASGI middleware factory limiting every request under ``path_prefix`` per secret key.

    Requests without a bearer key pass through; authentication answers them with 401.
    """

    def middleware(app: ASGIApp) -> ASGIApp:
        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or not scope["path"].startswith(path_prefix):
                await app(scope, receive, send)
                return
            authorization = next((value for name, value in scope["headers"] if name == b"authorization"), None)
            name = bucket_name(authorization) if authorization is not None else None
            if name is not None:
                wait = await buckets.take(name, int(clock() * 1000))
                if wait:
                    body, headers = _too_many(wait)
                    start: Message = {"type": "http.response.start", "status": 429, "headers": headers}
                    await send(start)
                    await send({"type": "http.response.body", "body": body})
                    return
            await app(scope, receive, send)

        return limited

    return middleware
