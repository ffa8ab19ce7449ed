"""Real ``switch serve`` processes for the observability tests, and traffic to send them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import asyncpg
import httpx

from switch.ledger.migrate import migrate
from switch.merchants import create_merchant
from switch.payments.risk_check import compile_risk_document
from switch.stores.documents import VersionedDocuments
from tests.api.helpers import fresh_card_number, payment_body
from tests.conftest import WITHOUT_CARD_VELOCITY

SWITCH = [sys.executable, "-m", "switch.cli"]
DECLINE = "4000000000000002"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """A running ``switch serve``: its URL, the lines of its start-up banner, its log file."""

    def __init__(self, url: str, banner: list[str], log: pathlib.Path, process: subprocess.Popen) -> None:
        self.url = url
        self.banner = banner
        self.log = log
        self.process = process

    def banner_value(self, prefix: str) -> str:
        for line in self.banner:
            if line.startswith(prefix):
                return line.removeprefix(prefix).strip()
        raise AssertionError(f"no {prefix!r} line in the banner: {self.banner}")


@contextlib.contextmanager
def serve(
    database_url: str, redis_url: str, tmp: pathlib.Path, *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """Start ``switch serve`` and wait until it is ready; stop it (SIGTERM) on exit."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("SWITCH_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    environment.update(
        SWITCH_DATABASE_URL=database_url,
        SWITCH_REDIS_URL=redis_url,
        SWITCH_LOG_LEVEL="WARNING",
        SWITCH_LOG_FORMAT="json",
        SWITCH_DATA_DIR=str(tmp),
    )
    environment.update(env or {})
    port = free_port()
    log = tmp / f"serve-{port}.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [*SWITCH, "serve", "--port", str(port), "--workers", str(workers)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    banner: list[str] = []
    try:
        assert process.stdout is not None
        wanted = ("operations page:", "metrics:") if workers > 1 else ("operations page:",)
        while not all(any(line.startswith(w) for line in banner) for w in wanted):
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"switch serve exited: {log.read_text()[-2000:]}")
            banner.append(line.strip())
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"switch serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} never became ready: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Served(url, banner, log, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def new_merchant_key(database_url: str) -> str:
    """Create a merchant (routing to the sandbox) directly in the database; return its key."""
    connection = await asyncpg.connect(database_url)
    try:
        await migrate(connection)
        merchant, key = await create_merchant(connection, "obs-" + secrets.token_hex(4))
    finally:
        await connection.close()
    # The tests count declines the provider gave; risk's per-card rules would add their own.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        await VersionedDocuments(pool, "risk", compile_risk_document).put(merchant.id, WITHOUT_CARD_VELOCITY)
    finally:
        await pool.close()
    return key


async def send_payments(url: str, key: str, count: int, *, decline_every: int = 0, concurrency: int = 4) -> None:
    """POST ``count`` payments, each on a new connection (so several workers share them)."""
    headers = {"Authorization": f"Bearer {key}"}
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            index = queue.pop()
            number = DECLINE if decline_every and index % decline_every == 0 else fresh_card_number()
            async with httpx.AsyncClient(timeout=30) as http:
                response = await http.post(f"{url}/v1/payments", json=payment_body(number=number), headers=headers)
                assert response.status_code == 201, response.text

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def sample_value(exposition: str, name: str, **labels: str) -> float:
    """Sum the samples called ``name`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
