"""Schemathesis fuzzes every operation of the OpenAPI document against a running switch.

Whatever it sends, valid or not, the switch must never answer 5xx. The server runs as a real
uvicorn process on the test database, so the fuzzer sees exactly what a client would.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from switch.merchants import create_merchant


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live_switch(database_url: str, app) -> Iterator[tuple[str, str]]:
    """A switch served by uvicorn on the test database, and a merchant key for it."""
    import asyncpg

    async def make_key() -> str:
        connection = await asyncpg.connect(database_url)
        try:
            _, key = await create_merchant(connection, "fuzz-" + secrets.token_hex(4))
            return key
        finally:
            await connection.close()

    key = asyncio.run(make_key())
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    env.update({"SWITCH_DATABASE_URL": database_url, "SWITCH_LOG_LEVEL": "WARNING"})
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "switch.app:create_app_from_env", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{base}/health/ready", timeout=2):
                    break
            except OSError:
                time.sleep(0.05)
        yield base, key
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_no_input_makes_the_switch_answer_5xx(live_switch):
    base, key = live_switch
    schema = schemathesis.openapi.from_url(f"{base}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    statuses: list[int] = []
    for operation in operations:
        headers = {} if operation.path.startswith("/webhooks") else {"Authorization": f"Bearer {key}"}
        _fuzz(operation, base, headers, statuses)
    # The fuzzer must have reached the handlers with both accepted and refused requests.
    assert len(statuses) >= 100
    assert any(200 <= status < 300 for status in statuses)
    assert any(400 <= status < 500 for status in statuses)


def _fuzz(operation, base: str, headers: dict[str, str], statuses: list[int]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case) -> None:
        response = case.call(base_url=base, headers=headers)
        statuses.append(response.status_code)
        assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
        content_type = response.headers.get("content-type") or [""]
        if response.status_code >= 400 and content_type[0].startswith("application/json"):
            assert set(response.json()) == {"error"}, response.text[:300]

    fuzz()
