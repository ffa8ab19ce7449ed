"""A real TCP proxy between the switch and one of its dependencies, to stall or cut on command.

- :meth:`FaultProxy.stall`: a network partition. Connections stay open and new ones are
  accepted, but no byte moves in either direction; what was sent meanwhile is held and delivered
  on :meth:`heal`, as TCP would retransmit it, even when its sender has given up since (so a
  COMMIT sent just before the partition may land after the switch stopped waiting for it).
- :meth:`FaultProxy.cut`: a restart. Every connection is dropped and the port refuses new ones
  until :meth:`heal`.
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        """Create a proxy; :meth:`start` binds it."""
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self, port: int = 0) -> FaultProxy:
        """Listen (on ``port``, or a free one)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def dsn(self, url: str) -> str:
        """``url`` (a PostgreSQL or Redis URL on the upstream) rewritten to go through the proxy."""
        host, port = self._upstream
        return url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}", 1)

    def stall(self) -> None:
        """Hold every byte in both directions (a partition)."""
        self._flowing.clear()

    async def cut(self) -> None:
        """Drop every connection and refuse new ones (the server went away)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def heal(self) -> None:
        """Let bytes flow again, and accept connections again after a cut."""
        self._flowing.set()
        if self._server is None:
            await self.start(self.port)

    async def close(self) -> None:
        """Stop for good: every link ends (held bytes go nowhere, their connections are gone)."""
        await self.cut()
        self._flowing.set()
        if self._links:
            await asyncio.wait(set(self._links), timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            await self._flowing.wait()
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                up_writer.transport.abort()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = await reader.read(65_536)
                if not data:
                    break
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
