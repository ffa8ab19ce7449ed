"""Schemathesis fuzzes every operation of the OpenAPI document against a running switch.

Whatever it sends, valid (positive mode) or not (negative mode), the switch must never answer 5xx
and never answer outside its documented schema. A stateful run follows OpenAPI links added here
(create -> capture -> refund, create -> void, create -> read) so generated captures, refunds and
voids act on real payments. The server runs as a real uvicorn process on the test database, so
the fuzzer sees exactly what a client would.

CI runs a bounded number of cases (``SWITCH_FUZZ_EXAMPLES``, default 30 per operation and mode;
well under a minute). The long mode is the same test with a larger number, e.g.
``SWITCH_FUZZ_EXAMPLES=500 pytest tests/api/test_fuzz_openapi.py`` (thousands of requests).
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

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyStrategyDefinition, Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from switch.merchants import create_merchant
from tests.api.helpers import card

EXAMPLES = int(os.environ.get("SWITCH_FUZZ_EXAMPLES", "30"))
CHECKS = [not_a_server_error, response_schema_conformance]
CREATE = ("POST", "/v1/payments")


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
        _conforms(case, response)
        content_type = response.headers.get("content-type") or [""]
        if response.status_code >= 400 and content_type[0].startswith("application/json"):
            assert set(response.json()) == {"error"}, response.text[:300]

    try:
        fuzz()
    except Unsatisfiable:
        # An operation without parameters or body has nothing to make invalid in negative mode.
        assert mode is GenerationMode.NEGATIVE


def _conforms(case, response) -> None:
    """No 5xx; every error answer matches the documented error object.

    Success bodies are not validated yet: the payment handlers answer pre-encoded bytes, which the
    document describes as a bare string (left to the owner of the API layer).
    """
    checks = CHECKS if response.status_code >= 400 else [not_a_server_error]
    case.validate_response(response, checks=checks)


def _linked(document: dict) -> dict:
    """The OpenAPI document with links from a created payment to what can be done with it."""
    pay_id = {"payment_id": "$response.body#/id"}
    create = document["paths"]["/v1/payments"]["post"]["responses"]["201"]
    create["links"] = {
        "capture": {"operationId": "V1PaymentsPaymentIdCaptureCapturePayment", "parameters": pay_id},
        "void": {"operationId": "V1PaymentsPaymentIdVoidVoidPayment", "parameters": pay_id},
        "read": {"operationId": "V1PaymentsPaymentIdGetPayment", "parameters": pay_id},
    }
    capture = document["paths"]["/v1/payments/{payment_id}/capture"]["post"]["responses"]["200"]
    capture["links"] = {
        "refund": {"operationId": "V1PaymentsPaymentIdRefundsRefundPayment", "parameters": pay_id},
        "void": {"operationId": "V1PaymentsPaymentIdVoidVoidPayment", "parameters": pay_id},
    }
    refund = document["paths"]["/v1/payments/{payment_id}/refunds"]["post"]["responses"]["201"]
    refund["links"] = {
        "read": {"operationId": "V1RefundsRefundIdGetRefund", "parameters": {"refund_id": "$response.body#/id"}},
        "again": {
            "operationId": "V1PaymentsPaymentIdRefundsRefundPayment",
            "parameters": {"payment_id": "$response.body#/payment"},
        },
    }
    return document


@pytest.mark.xfail(
    raises=FlakyStrategyDefinition,
    strict=False,
    reason="schemathesis' state machine reports inconsistent draws against a live server (open)",
)
def test_stateful_fuzzing_reaches_capture_refund_and_void_of_real_payments(live_switch):
    base, key = live_switch
    document = _linked(httpx.get(f"{base}/schema/openapi.json").json())
    schema = schemathesis.openapi.from_dict(document)
    reached: dict[tuple[str, str], list[int]] = {}
    failures: list[str] = []

    class Switch(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case) -> None:
            # Seed a real, approvable payment half the time; the other half stays generated.
            if (case.method, case.path) == CREATE and isinstance(case.body, dict) and secrets.randbelow(2) == 0:
                case.body = {
                    "amount": 100 + secrets.randbelow(10_000),
                    "currency": "EUR",
                    "capture": "manual",
                    "payment_method": card(_card_number()),
                }

        def get_call_kwargs(self, case) -> dict:
            return {"base_url": base, "headers": {"Authorization": f"Bearer {key}"}}

        def after_call(self, response, case) -> None:
            reached.setdefault((case.method, case.operation.path), []).append(response.status_code)

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            # Collected, not raised: a live server cannot replay a sequence for hypothesis to shrink.
            try:
                _conforms(case, response)
            except Exception as exc:
                failures.append(f"{case.method} {case.path} -> {response.status_code}: {exc} {response.text[:300]}")

    Switch.run(
        settings=settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
            stateful_step_count=6,
            # A live server answers differently on a replay, so shrinking cannot reproduce a run.
            phases=[Phase.generate],
        )
    )  # fmt: skip
    assert not failures, failures[:5]
    succeeded = {operation for operation, statuses in reached.items() if any(200 <= s < 300 for s in statuses)}
    for operation in [
        CREATE,
        ("POST", "/v1/payments/{payment_id}/capture"),
        ("POST", "/v1/payments/{payment_id}/refunds"),
        ("POST", "/v1/payments/{payment_id}/void"),
    ]:
        assert operation in succeeded, (operation, reached.get(operation))


def _card_number() -> str:
    digits = [4, 2, 4, 2] + [secrets.randbelow(10) for _ in range(11)]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if position % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)
