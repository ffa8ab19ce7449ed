"""Random operation sequences over the HTTP API keep the ledger equal to an independent model.

The model is built only from the requests this test sends and the answers it gets: per payment the
authorized, captured and refunded amounts and the status, per merchant and currency what the
merchant is owed and what is held. At the end of every example it is compared with the ledger's
account sums and the payments' columns, and ``switch ledger verify`` must be clean.

Every POST carries an Idempotency-Key; some are sent again with the same key (the answer must be
identical and nothing may change). Faults are injected: sandbox cards that decline or fail, and
ledger batches that find the database unreachable (the first batch of a request, before the
provider is called, or the second, after it acted), after which the request is retried with the
same key, and recovery is run when the retry finds the key still in flight.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar

from switch.config import Settings
from switch.ledger.verify import verify_ledger
from switch.merchants import create_merchant
from tests.api.helpers import payment_body
from tests.conftest import MerchantKey, running_app, temporary_database, without_card_velocity
from tests.faults import database_lost_at

settings.register_profile(
    "ledger-properties",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=False,
)

# card -> what the sandbox answers (README "Sandbox test cards").
APPROVED = ("4242424242424242", "5555555555554444", "4000000000000416")  # 0416: unknown, then synced approved
DECLINED = ("4000000000000002", "4000000000009995", "4000000000009987")
FAILED = ("4000000000000119", "4000000000000408")
THREE_DS = ("4000002500003155",)
CARDS = APPROVED + DECLINED + FAILED + THREE_DS
AUTHORIZED_FAMILY = {"authorized", "partially_captured", "captured", "partially_refunded", "refunded"}

FAULTS = ("none", "none", "none", "none", "ledger_down_first_batch", "ledger_down_second_batch")


@dataclass
class Expected:
    """What one payment must look like, from the test's own bookkeeping."""

    currency: str
    amount: int
    status: str
    captured: int = 0
    refunded: int = 0
    closed: bool = False

    @property
    def held(self) -> int:
        return self.amount - self.captured if self.status in AUTHORIZED_FAMILY and not self.closed else 0

    def derive(self) -> None:
        if self.status not in AUTHORIZED_FAMILY:
            return
        if self.refunded:
            self.status = "refunded" if self.closed and self.refunded == self.captured else "partially_refunded"
        elif self.captured:
            self.status = "captured" if self.closed else "partially_captured"
        else:
            self.status = "authorized"


def _create_outcome(number: str, amount: int, currency: str, capture: str) -> Expected:
    if number in APPROVED:
        if capture == "automatic":
            return Expected(currency, amount, "captured", captured=amount, closed=True)
        return Expected(currency, amount, "authorized")
    if number in DECLINED:
        return Expected(currency, amount, "declined")
    if number in FAILED:
        return Expected(currency, amount, "failed")
    return Expected(currency, amount, "requires_action")


def _capture(model: Expected, amount: int | None, final: bool) -> int:
    """Apply a capture to the model; return the status code the switch must answer."""
    if model.status not in AUTHORIZED_FAMILY or model.closed:
        return 409
    remaining = model.amount - model.captured
    take = remaining if amount is None else amount
    if take > remaining:
        return 400
    model.captured += take
    model.closed = final or model.captured == model.amount
    model.derive()
    return 200


def _void(model: Expected) -> int:
    if model.status not in AUTHORIZED_FAMILY or model.captured or model.closed:
        return 409
    model.status = "voided"
    model.closed = True
    return 200


def _refund(model: Expected, amount: int | None) -> int:
    if model.status not in AUTHORIZED_FAMILY or model.captured == model.refunded:
        return 409
    remaining = model.captured - model.refunded
    take = remaining if amount is None else amount
    if take > remaining:
        return 400
    model.refunded += take
    model.derive()
    return 201


@pytest.fixture(scope="module")
def property_database(server_url: str) -> Iterator[str]:
    # Its own database: the faults below must not reach other tests, and verify must see only this
    # test's rows.
    with temporary_database(server_url, "ledger_props_") as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def switch_app(property_database: str) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    settings = Settings(database_url=property_database, data_dir=tempfile.gettempdir())
    async with (
        running_app(settings) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switch.test") as http,
    ):
        yield app, http


class Driver:
    """Sends requests with keys, repeats and faults, and checks each answer against the model."""

    def __init__(self, app: Litestar, http: httpx.AsyncClient, merchant: MerchantKey) -> None:
        self.app, self.http, self.merchant = app, http, merchant
        self.pool: asyncpg.Pool = app.state.pool

    async def _send(self, path: str, raw: bytes, key: str) -> httpx.Response:
        headers = {**self.merchant.headers, "Idempotency-Key": key, "Content-Type": "application/json"}
        return await self.http.post(path, content=raw, headers=headers)

    async def post(self, path: str, body: dict, fault: str, repeat: bool) -> httpx.Response:
        raw = json.dumps(body).encode()
        key = "prop-" + secrets.token_hex(8)
        if fault == "none":
            response = await self._send(path, raw, key)
        else:
            with database_lost_at(self.app, 1 if fault == "ledger_down_first_batch" else 2):
                response = await self._send(path, raw, key)
            if response.status_code == 503:
                response = await self._send(path, raw, key)
                if response.status_code == 409 and response.json()["error"]["type"] == "idempotency_error":
                    # The provider may have acted before the outcome batch failed: recovery settles it.
                    await self.app.state.recovery.run_once(now=time.time() + 3600)
                    response = await self._send(path, raw, key)
        assert response.status_code != 503, response.text
        if repeat:
            before = await self._books()
            again = await self._send(path, raw, key)
            assert again.status_code == response.status_code
            assert again.content == response.content
            if response.status_code < 300:
                assert again.headers.get("Idempotent-Replayed") == "true"
            assert await self._books() == before, "a replay changed the books"
        return response

    async def _books(self) -> tuple:
        rows = await self.pool.fetch(
            "SELECT t.id, e.account, e.amount FROM journal_transactions t JOIN journal_entries e"
            " ON e.transaction_id = t.id WHERE t.merchant_id = $1 ORDER BY e.id",
            self.merchant.id,
        )
        payments = await self.pool.fetch(
            "SELECT id, status, amount_captured, amount_refunded, version FROM payments WHERE merchant_id = $1"
            " ORDER BY id",
            self.merchant.id,
        )
        return tuple(map(tuple, rows)), tuple(map(tuple, payments))


amounts = st.one_of(st.none(), st.integers(1, 3000), st.integers(1, 10**6))
operation = st.one_of(
    st.tuples(
        st.just("create"),
        st.sampled_from(CARDS),
        st.integers(1, 5000),
        st.sampled_from(["manual", "automatic"]),
        st.sampled_from(["EUR", "JPY", "KWD"]),
    ),
    st.tuples(st.just("capture"), st.integers(0, 7), amounts, st.booleans()),
    st.tuples(st.just("void"), st.integers(0, 7)),
    st.tuples(st.just("refund"), st.integers(0, 7), amounts),
)
step = st.tuples(operation, st.sampled_from(FAULTS), st.booleans())


@settings(settings.get_profile("ledger-properties"))
@given(steps=st.lists(step, min_size=1, max_size=10))
@pytest.mark.timeout(240)
async def test_random_operation_sequences_keep_the_ledger_equal_to_the_model(switch_app, steps):
    app, http = switch_app
    created, key = await create_merchant(app.state.pool, "props-" + secrets.token_hex(6))
    await without_card_velocity(app, created.id)
    driver = Driver(app, http, MerchantKey(created.id, key))
    model: dict[str, Expected] = {}
    order: list[str] = []
    for op, fault, repeat in steps:
        kind = op[0]
        if kind == "create":
            _, number, amount, capture, currency = op
            body = payment_body(amount=amount, currency=currency, number=number, capture=capture)
            response = await driver.post("/v1/payments", body, fault, repeat)
            assert response.status_code == 201, response.text
            expected = _create_outcome(number, amount, currency, capture)
            answer = response.json()
            assert answer["status"] == expected.status, (number, answer)
            model[answer["id"]] = expected
            order.append(answer["id"])
            continue
        if not order:
            continue
        payment_id = order[op[1] % len(order)]
        expected = model[payment_id]
        path = f"/v1/payments/{payment_id}"
        if kind == "capture":
            amount, final = op[2], op[3]
            body = {"final": final} if amount is None else {"amount": amount, "final": final}
            status = _capture(expected, amount, final)
            response = await driver.post(f"{path}/capture", body, fault, repeat)
        elif kind == "void":
            status = _void(expected)
            response = await driver.post(f"{path}/void", {}, fault, repeat)
        else:
            amount = op[2]
            status = _refund(expected, amount)
            response = await driver.post(f"{path}/refunds", {} if amount is None else {"amount": amount}, fault, repeat)
        assert response.status_code == status, (kind, op, expected, response.text)
        if status < 300 and kind != "refund":
            answer = response.json()
            assert (answer["status"], answer["amount_captured"], answer["amount_refunded"]) == (
                expected.status,
                expected.captured,
                expected.refunded,
            )

    await _compare_with_the_ledger(app.state.pool, created.id, model)
    report = await verify_ledger(app.state.pool)
    assert report.ok, report.render()


async def _compare_with_the_ledger(pool: asyncpg.Pool, merchant_id: str, model: dict[str, Expected]) -> None:
    rows = await pool.fetch(
        "SELECT id, status, amount, currency, amount_captured, amount_refunded FROM payments WHERE merchant_id = $1",
        merchant_id,
    )
    columns = {row["id"]: (row["status"], row["amount"], row["currency"], row["amount_captured"],
                           row["amount_refunded"]) for row in rows}  # fmt: skip
    assert columns == {pid: (m.status, m.amount, m.currency, m.captured, m.refunded) for pid, m in model.items()}, (
        "payments' columns differ from the model"
    )
    owed: dict[tuple[str, str], int] = defaultdict(int)
    for m in model.values():
        if m.captured - m.refunded:
            owed[(m.currency, "posted")] += m.captured - m.refunded
        if m.held:
            owed[(m.currency, "pending")] += m.held
    sums = await pool.fetch(
        "SELECT e.currency, e.phase, -sum(e.amount) AS owed FROM journal_entries e"
        " JOIN journal_transactions t ON t.id = e.transaction_id"
        " WHERE e.account = $1 GROUP BY e.currency, e.phase HAVING sum(e.amount) <> 0",
        f"merchant_payable:{merchant_id}",
    )
    assert {(row["currency"], row["phase"]): row["owed"] for row in sums} == dict(owed), (
        "the merchant's payable account differs from the model"
    )
