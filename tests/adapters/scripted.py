"""A real local HTTP server that answers from a script, for answers the simulator never gives.

Each test queues the exact answers (status, body, and optionally "drop the connection") and reads
back what was received; nothing is mocked, requests go through the adapters' real transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Answer:
    """One scripted answer; ``drop`` closes the connection after reading the request."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    drop: bool = False
    delay_s: float = 0.0


@dataclass
class ScriptedServer:
    """Answers every request with the next queued :class:`Answer` (a 599 when the script ran out)."""

    answers: list[Answer] = field(default_factory=list)
    received: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    base_url: str = ""
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append((request.method, request.path_qs, dict(request.headers), body))
        answer = self.answers.pop(0) if self.answers else Answer(status=599, body=b'{"error": "script ran out"}')
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if answer.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type)


@asynccontextmanager
async def scripted_server(port: int = 0) -> AsyncIterator[tuple[ScriptedServer, web.AppRunner]]:
    """Run a :class:`ScriptedServer` on 127.0.0.1 until the block ends."""
    server = ScriptedServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.base_url = f"http://127.0.0.1:{server.port}"
    try:
        yield server, runner
    finally:
        await runner.cleanup()


def free_port() -> int:
    """A port nothing listens on (bound then released), for "cannot connect" cases."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
