"""A real local HTTP receiver of switch events, verifying signatures with the README's snippet."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def readme_verifier() -> Callable[..., bool]:
    """``verify_switch_signature`` exactly as the README shows it to merchants."""
    text = README.read_text()
    block = text.split("<!-- signature-snippet -->", 1)[1].split("<!-- /signature-snippet -->", 1)[0]
    code = block.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md signature snippet", "exec"), namespace)
    return namespace["verify_switch_signature"]


class Receiver:
    """Accepts signed deliveries; each event fails its first ``fail_first`` tries with a 500."""

    def __init__(
        self,
        secret: str = "",
        *,
        fail_first: int = 0,
        delay_s: float = 0.0,
        fail_when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.fail_when = fail_when
        self.delay_s = delay_s
        self.verify = readme_verifier()
        self.tries: dict[str, int] = {}
        self.accepted: list[dict[str, Any]] = []
        self.rejected = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.verify(request.headers.get("Switch-Signature", ""), body, self.secret):
            self.rejected += 1
            return web.Response(status=400, text="bad signature")
        event = json.loads(body)
        if request.headers.get("Switch-Event-Id") != event["id"]:
            return web.Response(status=400, text="event id header mismatch")
        tries = self.tries[event["id"]] = self.tries.get(event["id"], 0) + 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if tries <= self.fail_first or (self.fail_when is not None and self.fail_when(event)):
            return web.Response(status=500, text="induced failure")
        self.accepted.append(event)
        self.arrived.set()
        return web.Response(status=204)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hooks"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def first_arrivals(self) -> list[str]:
        """Event ids in the order each first arrived (deliveries are at least once)."""
        seen: list[str] = []
        for event in self.accepted:
            if event["id"] not in seen:
                seen.append(event["id"])
        return seen
