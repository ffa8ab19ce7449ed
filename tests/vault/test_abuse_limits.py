"""Abuse limits: a token bucket per secret key (memory and Redis), body size, strict JSON, security headers."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import msgspec
import pytest

from switch.api.ratelimit import MemoryBuckets, RedisBuckets, bucket_name
from switch.merchants import create_merchant
from tests.api.helpers import error_of, payment_body
from tests.conftest import running_app

SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@pytest.fixture
def redis_buckets(redis_url):
    def build(rate: int, burst: int) -> RedisBuckets:
        return RedisBuckets(redis_url, rate, burst, prefix=f"test:rl:{secrets.token_hex(6)}:")

    return build


async def _bucket_contract(buckets) -> None:
    now = 1_000_000
    assert [await buckets.take("k", now) for _ in range(3)] == [0, 0, 0]  # the burst
    wait = await buckets.take("k", now)
    assert wait == 500  # 2 tokens a second: the next one in half a second
    assert await buckets.take("other", now) == 0  # buckets are per key
    assert await buckets.take("k", now + 499) > 0
    assert await buckets.take("k", now + 1000) == 0
    assert await buckets.take("k", now + 100_000) == 0  # idle: refilled, but never beyond the burst
    assert [await buckets.take("k", now + 100_000) for _ in range(3)][-1] > 0


async def test_memory_bucket_refills_at_the_rate_up_to_the_burst():
    await _bucket_contract(MemoryBuckets(2, 3))


async def test_redis_bucket_behaves_the_same_and_is_shared_by_workers(redis_buckets):
    shared = redis_buckets(2, 3)
    await _bucket_contract(shared)
    await shared.close()


async def test_two_workers_share_one_redis_bucket(redis_url):
    prefix = f"test:rl:{secrets.token_hex(6)}:"
    worker_a = RedisBuckets(redis_url, 1, 2, prefix=prefix)
    worker_b = RedisBuckets(redis_url, 1, 2, prefix=prefix)
    try:
        assert await worker_a.take("shared", 5_000) == 0
        assert await worker_b.take("shared", 5_000) == 0
        assert await worker_a.take("shared", 5_000) == 1000
        assert await worker_b.take("shared", 5_000) == 1000
    finally:
        await worker_a.close()
        await worker_b.close()


async def test_over_the_limit_is_429_with_retry_after_in_whole_seconds_gets_included(settings):
    limited = msgspec.structs.replace(settings, rate_limit_per_s=1, rate_limit_burst=3)
    async with running_app(limited) as application:
        _, key = await create_merchant(application.state.pool, "limited-" + secrets.token_hex(4))
        _, other_key = await create_merchant(application.state.pool, "limited-other-" + secrets.token_hex(4))
        headers = {"Authorization": f"Bearer {key}"}
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://switch.test") as http:
            answers = [await http.get("/v1/payments", headers=headers) for _ in range(6)]
            refused = [r for r in answers if r.status_code == 429]
            assert refused, [r.status_code for r in answers]
            assert answers[0].status_code == 200
            error = error_of(refused[0])
            assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limited")
            assert refused[0].headers["retry-after"].isdigit() and int(refused[0].headers["retry-after"]) >= 1
            posted = await http.post("/v1/payments", json=payment_body(), headers=headers)
            assert posted.status_code == 429  # POSTs share the bucket
            assert (await http.get("/v1/payments", headers={"Authorization": f"Bearer {other_key}"})).status_code == 200
            assert (await http.get("/health/live")).status_code == 200  # probes are not limited


def test_buckets_are_named_by_a_hash_never_the_key():
    name = bucket_name(b"Bearer sk_test_abcdef")
    assert name is not None and "sk_test" not in name and len(name) == 32
    assert bucket_name(b"Basic xyz") is None


async def test_every_response_carries_the_security_headers(client, merchant):
    responses = [
        await client.get("/v1/payments", headers=merchant.headers),
        await client.post("/v1/payments", json=payment_body(), headers=merchant.headers),
        await client.get("/v1/payments/pay_missing", headers=merchant.headers),
        await client.get("/v1/payments"),
        await client.get("/health/live"),
        await client.get("/nowhere"),
    ]
    for response in responses:
        for name, value in SECURITY.items():
            assert response.headers.get(name) == value, (response.request.url, name)
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "max-age=" in response.headers["strict-transport-security"]


async def test_a_body_over_the_limit_is_413(client, merchant):
    body = payment_body(metadata={"k": "x" * 400})
    raw = msgspec.json.encode(body) + b" " * 300_000
    response = await client.post(
        "/v1/payments", content=raw, headers={**merchant.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"amount": 100, "currency": "EUR", "payment_method": {"type": "konbini"}} trailing', "invalid_json"),
        (b'{"amount": NaN, "currency": "EUR"}', "invalid_json"),
        (b'{"amount": 100.5, "currency": "JPY", "payment_method": {"type": "konbini"}}', "parameter_invalid"),
        (b'{"amount": "100", "currency": "JPY", "payment_method": {"type": "konbini"}}', "parameter_invalid"),
        (b'{"amount": 100, "currency": "JPY", "payment_method": {"type": "konbini"}, "x": 1}', "parameter_unknown"),
        (b"[1, 2]", "parameter_invalid"),
    ],
)
async def test_bodies_are_decoded_strictly(client, merchant, raw, code):
    response = await client.post(
        "/v1/payments", content=raw, headers={**merchant.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == code


async def test_concurrent_requests_within_the_burst_all_pass(client, merchant):
    answers = await asyncio.gather(*(client.get("/v1/payments", headers=merchant.headers) for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
