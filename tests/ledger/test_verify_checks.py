"""``switch ledger verify`` proven check by check: each one passes a real ledger and fails its corruption.

One ledger is built per module through the HTTP API on a database of its own (sales, a hold, a
partial capture, a refund, a void, declines). Every test then works on a copy of that database
(``CREATE DATABASE ... TEMPLATE``), checks that the copy verifies clean, corrupts it in exactly the
way one check names, and asserts that this check, and only this check, fails.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import msgspec
import pytest
import pytest_asyncio

from switch.config import Settings
from switch.ledger.verify import VerifyReport, verify_ledger
from switch.merchants import create_merchant
from tests.api.helpers import fresh_card_number, payment_body
from tests.conftest import _with_database, running_app, temporary_database

ALL_CHECKS = {
    "balanced",
    "non_empty",
    "no_orphan_transactions",
    "holds_match_payments",
    "posted_match_payments",
    "authorized_have_postings",
    "unsuccessful_have_no_postings",
    "refunds_match_payments",
    "currency_consistent",
    "payable_is_payment_merchant",
    "receivable_is_payment_provider",
    "body_matches_columns",
    "kind_matches_operation",
    "sale_and_hold_phases",
    "operations_booked",
    "idempotent_responses_exist",
}


def _fresh_body(**fields: object) -> dict:
    """A payment body with a new card, so risk's per-card velocity leaves the payments alone."""
    return payment_body(number=fresh_card_number(), **fields)


class Ledger(msgspec.Struct, kw_only=True):
    """The clean source database and the objects the corruptions aim at."""

    database: str
    merchant: str
    other_merchant: str
    sale: str  # automatic capture, no Idempotency-Key
    keyed_sale: str  # automatic capture, created with an Idempotency-Key
    held: str  # manual capture, authorized only
    captured: str  # manual capture, partially captured with an Idempotency-Key
    refunded: str  # automatic capture in JPY, partially refunded with an Idempotency-Key
    refund: str
    voided: str
    declined: str


async def _admin(server_url: str, sql: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def source_url(server_url: str) -> Iterator[str]:
    with temporary_database(server_url, "verify_src_") as url:
        yield url


async def _post(http: httpx.AsyncClient, path: str, key: str, body: dict, idem: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    response = await http.post(path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest_asyncio.fixture(scope="module")
async def ledger(source_url: str) -> Ledger:
    async with running_app(Settings(database_url=source_url, data_dir=tempfile.gettempdir())) as app:
        pool = app.state.pool
        merchant, key = await create_merchant(pool, "verify-" + secrets.token_hex(4))
        other, other_key = await create_merchant(pool, "verify-other-" + secrets.token_hex(4))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switch.test") as http:
            pay = "/v1/payments"
            sale = await _post(http, pay, key, _fresh_body(amount=1250))
            keyed = await _post(http, pay, key, _fresh_body(amount=700), idem="k-sale")
            held = await _post(http, pay, key, _fresh_body(amount=3000, capture="manual"))
            captured = await _post(http, pay, key, _fresh_body(amount=2000, capture="manual"))
            await _post(http, f"{pay}/{captured['id']}/capture", key, {"amount": 800}, idem="k-capture")
            refunded = await _post(http, pay, key, _fresh_body(amount=5000, currency="JPY"))
            refund = await _post(http, f"{pay}/{refunded['id']}/refunds", key, {"amount": 1200}, idem="k-refund")
            voided = await _post(http, pay, key, _fresh_body(amount=900, capture="manual"))
            await _post(http, f"{pay}/{voided['id']}/void", key, {}, idem="k-void")
            declined = await _post(http, pay, key, payment_body(number="4000000000000002"))
            failed = await _post(http, pay, key, payment_body(number="4000000000000119"))
            assert (declined["status"], failed["status"]) == ("declined", "failed")
            await _post(http, pay, other_key, _fresh_body(amount=4100), idem="k-sale")
    return Ledger(
        database=source_url.rpartition("/")[2].partition("?")[0],
        merchant=merchant.id,
        other_merchant=other.id,
        sale=sale["id"],
        keyed_sale=keyed["id"],
        held=held["id"],
        captured=captured["id"],
        refunded=refunded["id"],
        refund=refund["id"],
        voided=voided["id"],
        declined=declined["id"],
    )


@pytest_asyncio.fixture
async def copy(server_url: str, ledger: Ledger) -> AsyncIterator[asyncpg.Connection]:
    """A throwaway copy of the clean ledger, so that no corruption reaches another test."""
    name = "verify_case_" + secrets.token_hex(6)
    await _admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{ledger.database}"')
    connection = await asyncpg.connect(_with_database(server_url, name))
    try:
        yield connection
    finally:
        await connection.close()
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _corrupt(connection: asyncpg.Connection, statement: str) -> VerifyReport:
    """Check the copy is clean, run the corrupting statement, and verify again."""
    before = await verify_ledger(connection)
    assert before.ok, before.render()
    await connection.execute(statement)
    return await verify_ledger(connection)


async def _transaction(connection: asyncpg.Connection, payment_id: str, kind: str) -> str:
    txn = await connection.fetchval(
        "SELECT id FROM journal_transactions WHERE payment_id = $1 AND kind = $2", payment_id, kind
    )
    assert txn is not None, f"payment {payment_id} has no {kind} transaction"
    return txn


def _violations(report: VerifyReport, name: str) -> str:
    return "\n".join(next(check.violations for check in report.checks if check.name == name))


async def test_the_ledger_built_through_the_api_verifies_clean_under_every_check(ledger, copy):
    report = await verify_ledger(copy)
    assert report.ok, report.render()
    assert {check.name for check in report.checks} == ALL_CHECKS
    kinds = {row["kind"] for row in await copy.fetch("SELECT DISTINCT kind FROM journal_transactions")}
    assert kinds == {"sale", "authorize", "capture", "refund", "void"}


async def test_an_entry_changed_on_one_side_fails_balanced(ledger, copy):
    txn = await _transaction(copy, ledger.sale, "sale")
    report = await _corrupt(
        copy,
        f"UPDATE journal_entries SET amount = amount - 1 WHERE transaction_id = '{txn}'"
        " AND account LIKE 'merchant_payable:%'",
    )
    assert report.failed == {"balanced"}
    assert txn in _violations(report, "balanced")


async def test_a_transaction_stripped_of_its_entries_fails_non_empty(ledger, copy):
    # Both of the voided payment's transactions (hold and release) lose their entries, so no sum moves.
    report = await _corrupt(
        copy,
        "DELETE FROM journal_entries WHERE transaction_id IN"
        f" (SELECT id FROM journal_transactions WHERE payment_id = '{ledger.voided}')",
    )
    assert report.failed == {"non_empty"}
    assert ledger.voided in _violations(report, "non_empty")


async def test_a_payment_deleted_under_its_postings_fails_no_orphan_transactions(ledger, copy):
    report = await _corrupt(copy, f"DELETE FROM payments WHERE id = '{ledger.sale}'")
    assert report.failed == {"no_orphan_transactions"}
    assert ledger.sale in _violations(report, "no_orphan_transactions")


async def test_a_hold_that_differs_from_the_capturable_amount_fails_holds_match_payments(ledger, copy):
    txn = await _transaction(copy, ledger.held, "authorize")
    report = await _corrupt(
        copy, f"UPDATE journal_entries SET amount = sign(amount) * (abs(amount) - 1) WHERE transaction_id = '{txn}'"
    )
    assert report.failed == {"holds_match_payments"}
    assert ledger.held in _violations(report, "holds_match_payments")


async def test_posted_money_that_differs_from_captured_fails_posted_match_payments(ledger, copy):
    txn = await _transaction(copy, ledger.sale, "sale")
    report = await _corrupt(
        copy, f"UPDATE journal_entries SET amount = sign(amount) * (abs(amount) - 1) WHERE transaction_id = '{txn}'"
    )
    assert report.failed == {"posted_match_payments"}
    assert ledger.sale in _violations(report, "posted_match_payments")


async def test_a_voided_status_without_an_authorization_fails_authorized_have_postings(ledger, copy):
    # A declined payment (no postings) claims, in its columns and its body alike, to have been voided.
    report = await _corrupt(
        copy,
        "UPDATE payments SET status = 'voided', body = jsonb_set(body::jsonb, '{status}', '\"voided\"')::json"
        f" WHERE id = '{ledger.declined}'",
    )
    assert report.failed == {"authorized_have_postings"}
    assert ledger.declined in _violations(report, "authorized_have_postings")


async def test_a_declined_status_over_postings_fails_unsuccessful_have_no_postings(ledger, copy):
    # The voided payment's hold and release net to zero, so only its status is wrong.
    report = await _corrupt(
        copy,
        "UPDATE payments SET status = 'declined', body = jsonb_set(body::jsonb, '{status}', '\"declined\"')::json"
        f" WHERE id = '{ledger.voided}'",
    )
    assert report.failed == {"unsuccessful_have_no_postings"}
    assert ledger.voided in _violations(report, "unsuccessful_have_no_postings")


async def test_a_refund_row_that_disagrees_with_the_payment_fails_refunds_match_payments(ledger, copy):
    report = await _corrupt(copy, f"UPDATE refunds SET amount = amount + 1 WHERE id = '{ledger.refund}'")
    assert report.failed == {"refunds_match_payments"}
    assert ledger.refunded in _violations(report, "refunds_match_payments")


async def test_entries_in_another_currency_fail_currency_consistent(ledger, copy):
    # Both sides move, so the transaction still balances in its (wrong) currency.
    txn = await _transaction(copy, ledger.sale, "sale")
    report = await _corrupt(copy, f"UPDATE journal_entries SET currency = 'USD' WHERE transaction_id = '{txn}'")
    assert report.failed == {"currency_consistent"}
    assert ledger.sale in _violations(report, "currency_consistent")


async def test_a_payable_moved_to_another_merchant_fails_payable_is_payment_merchant(ledger, copy):
    txn = await _transaction(copy, ledger.sale, "sale")
    report = await _corrupt(
        copy,
        f"UPDATE journal_entries SET account = 'merchant_payable:{ledger.other_merchant}'"
        f" WHERE transaction_id = '{txn}' AND account LIKE 'merchant_payable:%'",
    )
    assert report.failed == {"payable_is_payment_merchant"}
    assert f"merchant_payable:{ledger.other_merchant}" in _violations(report, "payable_is_payment_merchant")


async def test_a_transaction_recorded_for_another_merchant_fails_payable_is_payment_merchant(ledger, copy):
    txn = await _transaction(copy, ledger.sale, "sale")
    report = await _corrupt(
        copy, f"UPDATE journal_transactions SET merchant_id = '{ledger.other_merchant}' WHERE id = '{txn}'"
    )
    assert report.failed == {"payable_is_payment_merchant"}
    assert txn in _violations(report, "payable_is_payment_merchant")


async def test_a_receivable_booked_to_another_provider_fails_receivable_is_payment_provider(ledger, copy):
    txn = await _transaction(copy, ledger.sale, "sale")
    report = await _corrupt(
        copy,
        "UPDATE journal_entries SET account = 'provider_receivable:stripe'"
        f" WHERE transaction_id = '{txn}' AND account LIKE 'provider_receivable:%'",
    )
    assert report.failed == {"receivable_is_payment_provider"}
    assert ledger.sale in _violations(report, "receivable_is_payment_provider")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", '"refunded"'),
        ("amount", "1251"),
        ("amount_captured", "0"),
        ("amount_refunded", "1250"),
        ("currency", '"USD"'),
        ("id", '"pay_someoneelse"'),
    ],
)
async def test_a_body_that_disagrees_with_its_columns_fails_body_matches_columns(ledger, copy, field, value):
    report = await _corrupt(
        copy,
        f"UPDATE payments SET body = jsonb_set(body::jsonb, '{{{field}}}', '{value}')::json WHERE id = '{ledger.sale}'",
    )
    assert report.failed == {"body_matches_columns"}
    assert field in _violations(report, "body_matches_columns")


@pytest.mark.parametrize(
    ("payment", "kind", "relabel"),
    [
        ("captured", "capture", "refund"),
        ("refunded", "refund", "capture"),
        ("voided", "void", "capture"),
        ("refunded", "refund", "void"),
        ("captured", "capture", "sale"),
    ],
)
async def test_a_relabelled_transaction_fails_kind_matches_operation(ledger, copy, payment, kind, relabel):
    txn = await _transaction(copy, getattr(ledger, payment), kind)
    report = await _corrupt(copy, f"UPDATE journal_transactions SET kind = '{relabel}' WHERE id = '{txn}'")
    # A capture relabelled a sale is also a sale with pending entries: two invariants broken.
    expected = {"kind_matches_operation"} | ({"sale_and_hold_phases"} if relabel == "sale" else set())
    assert report.failed == expected
    assert txn in _violations(report, "kind_matches_operation")


@pytest.mark.parametrize(("payment", "kind", "relabel"), [("sale", "sale", "authorize"), ("held", "authorize", "sale")])
async def test_a_sale_relabelled_a_hold_or_back_fails_sale_and_hold_phases(ledger, copy, payment, kind, relabel):
    txn = await _transaction(copy, getattr(ledger, payment), kind)
    report = await _corrupt(copy, f"UPDATE journal_transactions SET kind = '{relabel}' WHERE id = '{txn}'")
    assert report.failed == {"sale_and_hold_phases"}
    assert txn in _violations(report, "sale_and_hold_phases")


async def test_a_booked_operation_marked_refused_fails_operations_booked(ledger, copy):
    operation = await copy.fetchval(
        "SELECT id FROM payment_operations WHERE payment_id = $1 AND kind = 'capture'", ledger.captured
    )
    assert operation is not None, "the capture left no payment_operations row"
    report = await _corrupt(copy, f"UPDATE payment_operations SET status = 'refused' WHERE id = '{operation}'")
    assert report.failed == {"operations_booked"}
    assert operation in _violations(report, "operations_booked")


async def test_a_succeeded_operation_without_its_transaction_fails_operations_booked(ledger, copy):
    # An intent closed as succeeded whose postings never landed: money moved that the books lack.
    report = await _corrupt(
        copy,
        "INSERT INTO payment_operations (id, payment_id, merchant_id, kind, amount, currency, provider, provider_key,"
        " status, params, lease_until, next_check, created)"
        f" SELECT 'cap_unbooked', id, merchant_id, 'capture', 100, currency, provider, 'pk', 'succeeded', '{{}}', 0, 0,"
        f" created FROM payments WHERE id = '{ledger.held}'",
    )
    assert report.failed == {"operations_booked"}
    assert "cap_unbooked" in _violations(report, "operations_booked")


@pytest.mark.parametrize(
    ("key", "statement"),
    [
        # The stored answer names a payment the books do not have.
        (
            "k-sale",
            "UPDATE idempotency_keys SET response = convert_to(replace(convert_from(response, 'UTF8'),"
            " '{keyed_sale}', 'pay_nowhere'), 'UTF8') WHERE key = 'k-sale' AND merchant_id = '{merchant}'",
        ),
        # The stored refund names a refund that does not exist.
        (
            "k-refund",
            "UPDATE idempotency_keys SET response = convert_to(replace(convert_from(response, 'UTF8'),"
            " '{refund}', 're_nowhere'), 'UTF8') WHERE key = 'k-refund' AND merchant_id = '{merchant}'",
        ),
        # Another merchant's key replays this merchant's payment.
        (
            "k-capture",
            "UPDATE idempotency_keys SET merchant_id = '{other_merchant}'"
            " WHERE key = 'k-capture' AND merchant_id = '{merchant}'",
        ),
    ],
)
async def test_a_stored_answer_naming_a_missing_or_foreign_object_fails_idempotent_responses_exist(
    ledger, copy, key, statement
):
    report = await _corrupt(copy, statement.format(**msgspec.structs.asdict(ledger)))
    assert report.failed == {"idempotent_responses_exist"}
    assert f"key {key} " in _violations(report, "idempotent_responses_exist")
