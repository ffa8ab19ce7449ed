"""Real ``switch serve`` worker processes on one database and Redis, for multi-worker tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping

import asyncpg
import httpx

from switch.ledger.migrate import migrate

SWITCH = [sys.executable, "-m", "switch.cli"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def serve_workers(
    database_url: str, redis_url: str, providers_file: str, extra_env: Mapping[str, str] | None = None, count: int = 2
) -> AsyncIterator[list[str]]:
    """Migrate the database, start ``count`` ``switch serve`` processes, yield their URLs once ready.

    The processes see only the ``SWITCH_*`` variables given here, and are terminated on exit.
    """
    connection = await asyncpg.connect(database_url)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    env.update(
        SWITCH_DATABASE_URL=database_url,
        SWITCH_REDIS_URL=redis_url,
        SWITCH_PROVIDERS_FILE=providers_file,
        SWITCH_LOG_LEVEL="WARNING",
        **(extra_env or {}),
    )
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [*SWITCH, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        async with httpx.AsyncClient() as http:
            for url, process in zip(urls, processes, strict=True):
                for _ in range(300):
                    if process.poll() is not None:
                        assert process.stderr is not None
                        raise RuntimeError(f"switch serve exited: {process.stderr.read().decode()[-2000:]}")
                    try:
                        if (await http.get(f"{url}/health/ready")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError(f"{url} never became ready")
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
