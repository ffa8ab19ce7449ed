"""Schemathesis fuzzes every operation of the OpenAPI document against a running switch.

Whatever it sends, valid (positive mode) or not (negative mode), the switch must never answer 5xx
and never answer outside its documented schema. A stateful run follows the OpenAPI links the
document serves (create -> capture -> refund, create -> void, reads) with a hypothesis state
machine (``tests/api/fuzz_machine.py``, which says why not schemathesis' own), so generated
captures, refunds and voids act on real payments; the database then shows that they happened. The
server runs as a real uvicorn process on the test database, so the fuzzer sees what a client would.

CI runs a bounded number of cases (``SWITCH_FUZZ_EXAMPLES``, default 30 per operation and mode, and
30 stateful runs of ``STEPS`` steps; about a minute). The long mode is the same test with a larger
number, e.g. ``SWITCH_FUZZ_EXAMPLES=500 pytest tests/api/test_fuzz_openapi.py`` (thousands of
requests).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import GenerationMode

from switch.merchants import create_merchant
from tests.api import fuzz_machine

EXAMPLES = int(os.environ.get("SWITCH_FUZZ_EXAMPLES", "30"))
STEPS = 10


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
    # The data directory of the session's app fixture: the same vault master key for the same database.
    env.update(
        {"SWITCH_DATABASE_URL": database_url, "SWITCH_LOG_LEVEL": "WARNING", "SWITCH_DATA_DIR": tempfile.gettempdir()}
    )
    # One key sends thousands of requests: the per-key rate limit would answer 429s at random points.
    env.update({"SWITCH_RATE_LIMIT_PER_S": "1000000", "SWITCH_RATE_LIMIT_BURST": "1000000"})
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "switch.app:create_app_from_env", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{base}/health/ready", timeout=2):
                    break
            except OSError:
                time.sleep(0.05)
        yield base, key
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_the_switch_answer_5xx(live_switch, mode):
    base, key = live_switch
    schema = schemathesis.openapi.from_url(f"{base}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    statuses: list[int] = []
    for operation in operations:
        headers = {} if operation.path.startswith("/webhooks") else {"Authorization": f"Bearer {key}"}
        _fuzz(operation, base, headers, statuses, mode)
    # The fuzzer must have reached the handlers with both accepted and refused requests.
    assert len(statuses) >= 100
    if mode is GenerationMode.POSITIVE:
        assert any(200 <= status < 300 for status in statuses)
    assert any(400 <= status < 500 for status in statuses)


def _fuzz(operation, base: str, headers: dict[str, str], statuses: list[int], mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case) -> None:
        response = case.call(base_url=base, headers=headers)
        statuses.append(response.status_code)
        assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
        fuzz_machine.conforms(case, response)

    try:
        fuzz()
    except Unsatisfiable:
        # An operation without parameters or body has nothing to make invalid in negative mode.
        assert mode is GenerationMode.NEGATIVE


def _new_merchant(database_url: str) -> tuple[str, str]:
    """A fresh merchant's id and key, so that the database counts below are this run's alone."""
    import asyncpg

    async def make() -> tuple[str, str]:
        connection = await asyncpg.connect(database_url)
        try:
            merchant, key = await create_merchant(connection, "fuzz-stateful-" + secrets.token_hex(4))
            return merchant.id, key
        finally:
            await connection.close()

    return asyncio.run(make())


def _succeeded_operations(database_url: str, merchant_id: str) -> dict[str, int]:
    """Captures, voids and refunds the database holds as done by the provider for the merchant."""
    import asyncpg

    async def count() -> dict[str, int]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "SELECT kind, count(*) AS n FROM payment_operations"
                " WHERE merchant_id = $1 AND status = 'succeeded' GROUP BY kind",
                merchant_id,
            )
            return {row["kind"]: row["n"] for row in rows}
        finally:
            await connection.close()

    return asyncio.run(count())


def test_stateful_fuzzing_reaches_capture_refund_and_void_of_real_payments(live_switch, database_url):
    base, _ = live_switch
    merchant_id, key = _new_merchant(database_url)
    schema = schemathesis.openapi.from_url(f"{base}/schema/openapi.json")
    # The served links must be valid to schemathesis too (its own state machine is built from them).
    schema.as_state_machine()
    machine, log = fuzz_machine.switch_machine(schema, base, {"Authorization": f"Bearer {key}"})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
            # No shrinking or replay: a live server does not answer a replayed sequence the same way.
            phases=[Phase.generate],
        ),
    )  # fmt: skip
    assert not log.failures, log.failures[:5]
    assert not [status for status in log.statuses if status >= 500]
    # Each link was followed with a real payment (or refund) at least once.
    for link in ("create->capture", "create->void", "capture->refund", "refund->read"):
        assert log.followed[link] > 0, (link, dict(log.followed))
    done = _succeeded_operations(database_url, merchant_id)
    for kind in ("capture", "refund", "void"):
        assert done.get(kind, 0) > 0, (kind, done, dict(log.followed))
