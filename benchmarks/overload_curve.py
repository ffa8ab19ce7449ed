"""Offered load from 0.5x to 5x capacity against goodput and p99, with admission control on.

An open-loop asyncio load generator (fixed arrival rate: requests start on schedule whether or
not earlier ones finished, as real clients arrive) posts keyed payments to a running switch.
Capacity is measured first (closed loop, ``--concurrency`` clients), then each multiple of it is
offered for ``--seconds``. Goodput counts 201s per second; p99 is over the admitted (201) ones;
shed counts ``503 overloaded``.

    switch serve --port 8000 &                    # SWITCH_MAX_INFLIGHT, SWITCH_SANDBOX_LATENCY_MS as wanted
    python benchmarks/overload_curve.py --url http://127.0.0.1:8000 --key sk_test_...
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time

import httpx

MULTIPLES = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0)


def _card() -> str:
    digits = [4, 2, 4, 2] + [secrets.randbelow(10) for _ in range(11)]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if position % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


async def post_payment(http: httpx.AsyncClient, key: str) -> tuple[int, float]:
    body = {
        "amount": 1250,
        "currency": "EUR",
        "payment_method": {
            "type": "card",
            "card": {"number": _card(), "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        },
    }
    started = time.perf_counter()
    try:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": secrets.token_hex(8)}
        response = await http.post("/v1/payments", json=body, headers=headers)
        status = response.status_code
        if status == 503 and response.json()["error"]["code"] != "overloaded":
            status = 5031  # a 503 for another reason (ledger, database)
    except httpx.HTTPError:
        status = 0
    return status, time.perf_counter() - started


async def capacity(http: httpx.AsyncClient, key: str, concurrency: int, seconds: float) -> float:
    """Payments per second that ``concurrency`` closed-loop clients complete."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            status, _ = await post_payment(http, key)
            done += status == 201

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done / seconds


async def offered(http: httpx.AsyncClient, key: str, rate: float, seconds: float) -> dict[str, float]:
    """Offer ``rate`` requests per second for ``seconds``; return goodput, p99 and shed."""
    tasks: list[asyncio.Task[tuple[int, float]]] = []
    started = time.perf_counter()
    total = int(rate * seconds)
    for i in range(total):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post_payment(http, key)))
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    ok = sorted(latency for status, latency in results if status == 201)
    p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))] * 1000 if ok else float("nan")
    return {
        "offered": rate,
        "goodput": len(ok) / elapsed,
        "p99_ms": p99,
        "shed": sum(1 for status, _ in results if status == 503) / max(1, total),
        "errors": sum(1 for status, _ in results if status not in (201, 503)),
    }


async def main() -> None:
    """Measure capacity, then the curve; print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
    async with httpx.AsyncClient(base_url=args.url, timeout=30, limits=limits) as http:
        cap = await capacity(http, args.key, args.concurrency, args.seconds)
        print(f"capacity: {cap:.0f} payments/s ({args.concurrency} closed-loop clients)\n")
        print("| offered | offered/s | goodput/s | p99 of admitted (ms) | shed 503 overloaded | other errors |")
        print("|---|---|---|---|---|---|")
        for multiple in MULTIPLES:
            row = await offered(http, args.key, cap * multiple, args.seconds)
            print(
                f"| {multiple:g}x | {row['offered']:.0f} | {row['goodput']:.0f} | {row['p99_ms']:.0f} |"
                f" {row['shed']:.0%} | {row['errors']:.0f} |"
            )


if __name__ == "__main__":
    asyncio.run(main())
