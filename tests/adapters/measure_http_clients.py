"""Measure aiohttp vs httpx as the adapters' transport, under uvloop (not a test; run by hand).

Usage: ``.venv/bin/python tests/adapters/measure_http_clients.py``. Starts a tiny aiohttp server on
127.0.0.1, then sends the same POST (a 300-byte JSON body, keep-alive, 50 concurrent) with each
client and prints requests per second. The result is recorded in docs/providers.md.
"""

import asyncio
import json
import time

import aiohttp
import httpx
import uvloop
from aiohttp import web

BODY = json.dumps({"amount": {"value": 1250, "currency": "EUR"}, "reference": "x" * 200}).encode()
N = 4000
CONCURRENCY = 50


async def _handler(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"pspReference": "ABC", "resultCode": "Authorised"})


async def _run_aiohttp(url: str) -> float:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with sem, session.post(url, data=BODY, headers={"Content-Type": "application/json"}) as r:
                await r.read()

        await asyncio.gather(*(one() for _ in range(200)))
        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(N)))
        return N / (time.perf_counter() - t)


async def _run_httpx(url: str) -> float:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits) as client:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with sem:
                r = await client.post(url, content=BODY, headers={"Content-Type": "application/json"})
                r.read()

        await asyncio.gather(*(one() for _ in range(200)))
        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(N)))
        return N / (time.perf_counter() - t)


async def main() -> None:
    app = web.Application()
    app.router.add_post("/p", _handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/p"
    for _ in range(3):
        a = await _run_aiohttp(url)
        h = await _run_httpx(url)
        print(f"aiohttp {a:8.0f} req/s   httpx {h:8.0f} req/s   ratio {a / h:.2f}")
    await runner.cleanup()


if __name__ == "__main__":
    uvloop.run(main())
