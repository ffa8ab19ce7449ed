"""The switch routed through real adapters against the provider simulator: routing, failover,
asynchronous methods completed by signed webhooks, duplicates and forgeries."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest_asyncio
from litestar import Litestar

from adapters.simulator import SimulatorServer
from switch.config import Settings
from switch.ledger.verify import verify_ledger
from switch.merchants import create_merchant
from tests.adapters.conftest import ADYEN_HMAC_KEY, Admin, Receiver
from tests.adapters.extra_cases import (
    PINGPONG_ACC_ID,
    PINGPONG_SALT,
    SEPA_HMAC_KEY,
    XENDIT_CALLBACK_TOKEN,
    XENDIT_SECRET_KEY,
)
from tests.api.helpers import card
from tests.conftest import MerchantKey, running_app

PROVIDERS_TOML = """
[accounts.stripe]
provider = "stripe"
api_key = "sk_test_simulator"
webhook_secret = "env:TEST_STRIPE_WHSEC"
base_url = "{stripe}"

[accounts.adyen]
provider = "adyen"
api_key = "AQE_simulator"
account_id = "SwitchECOM"
webhook_secret = "{adyen_key}"
base_url = "{adyen}"

[accounts.midtrans]
provider = "midtrans"
api_key = "SB-Mid-server-simulator"
base_url = "{midtrans}"

[accounts.xendit]
provider = "xendit"
api_key = "{xendit_key}"
webhook_secret = "{xendit_token}"
base_url = "{xendit}"

[accounts.pingpong]
provider = "pingpong"
api_key = "{pingpong_salt}"
account_id = "{pingpong_acc}"
base_url = "{pingpong}"

[accounts.sepa]
provider = "sepa"
api_key = "sepa-gateway-token"
webhook_secret = "{sepa_key}"
base_url = "{sepa}"

[accounts.sepa.extra]
creditor_name = "Switch Merchant GmbH"
creditor_iban = "DE89370400440532013000"
creditor_bic = "COBADEFFXXX"
creditor_id = "DE98ZZZ09999999999"
"""


@pytest_asyncio.fixture(scope="module")
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(port=0) as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def hooks() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest_asyncio.fixture(scope="module")
async def routed_app(sim, database_url, tmp_path_factory) -> AsyncIterator[Litestar]:
    import os

    os.environ["TEST_STRIPE_WHSEC"] = "whsec_simulator"
    path = tmp_path_factory.mktemp("providers") / "providers.toml"
    path.write_text(
        PROVIDERS_TOML.format(
            stripe=sim.url_for("stripe"),
            adyen=sim.url_for("adyen"),
            midtrans=sim.url_for("midtrans"),
            adyen_key=ADYEN_HMAC_KEY,
            xendit=sim.url_for("xendit"),
            xendit_key=XENDIT_SECRET_KEY,
            xendit_token=XENDIT_CALLBACK_TOKEN,
            pingpong=sim.url_for("pingpong"),
            pingpong_salt=PINGPONG_SALT,
            pingpong_acc=PINGPONG_ACC_ID,
            sepa=sim.url_for("sepa"),
            sepa_key=SEPA_HMAC_KEY,
        )
    )
    async with running_app(Settings(database_url=database_url, providers_file=str(path))) as app:
        yield app


@pytest_asyncio.fixture(scope="module")
async def routed(routed_app) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=routed_app), base_url="http://switch.test") as c:
        yield c


@pytest_asyncio.fixture
async def admin(sim, hooks) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as session:
        operator = Admin(sim, session)
        await operator.reset()
        hooks.clear()
        yield operator


async def _merchant(routed_app, *providers: str) -> MerchantKey:
    created, key = await create_merchant(routed_app.state.pool, "routed-" + secrets.token_hex(4), providers)
    return MerchantKey(created.id, key)


async def _pay(client, merchant, **body):
    payload = {"amount": 1250, "currency": "EUR", "payment_method": card(), **body}
    return await client.post("/v1/payments", json=payload, headers=merchant.headers)


async def _deliver(client, hooks: Receiver, provider: str, index: int = -1, count: int = 1) -> httpx.Response:
    # The simulator signed and sent this to our receiver; hand the exact bytes to the switch.
    deliveries = await hooks.wait_for(provider, count=count)
    headers, body, _ = deliveries[index]
    forward = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    return await client.post(f"/webhooks/{provider}", content=body, headers=forward)


async def test_card_payment_is_authorized_captured_and_refunded_through_a_real_adapter(routed, routed_app, admin):
    merchant = await _merchant(routed_app, "stripe")
    payment = (await _pay(routed, merchant, capture="manual")).json()
    assert payment["status"] == "authorized", payment
    assert payment["provider"] == "stripe"
    assert payment["provider_reference"].startswith("pi_")
    captured = await routed.post(f"/v1/payments/{payment['id']}/capture", headers=merchant.headers)
    assert captured.json()["status"] == "captured"
    refund = await routed.post(f"/v1/payments/{payment['id']}/refunds", json={"amount": 250}, headers=merchant.headers)
    assert refund.status_code == 201
    assert (await verify_ledger(routed_app.state.pool)).ok


async def test_a_provider_that_refuses_without_processing_fails_over_to_the_next(routed, routed_app, admin):
    merchant = await _merchant(routed_app, "adyen", "stripe")
    # 429: the provider says it processed nothing, so another provider may take the payment.
    await admin.burst("adyen", 429, 10)
    payment = (await _pay(routed, merchant)).json()
    assert payment["status"] == "captured", payment
    assert payment["provider"] == "stripe"
    attempts = payment["routing"]["attempts"]
    assert [a["provider"] for a in attempts] == ["adyen", "stripe"]
    assert [a["outcome"] for a in attempts] == ["technical", "approved"]


async def test_a_5xx_is_not_proof_of_nothing_so_the_payment_waits_instead_of_failing_over(routed, routed_app, admin):
    merchant = await _merchant(routed_app, "adyen", "stripe")
    await admin.burst("adyen", 503, 10)
    payment = (await _pay(routed, merchant)).json()
    assert payment["status"] == "pending", payment
    assert payment["pending_reason"] == "provider_outcome_unknown"
    assert [a["provider"] for a in payment["routing"]["attempts"]] == ["adyen"]
    assert admin.server.sim.books.charged_providers(payment["id"]) == set()


async def test_a_hard_decline_does_not_fail_over(routed, routed_app, admin):
    merchant = await _merchant(routed_app, "stripe", "adyen")
    await admin.knobs("stripe", approval_rate=0.0, decline_mix={"stolen_card": 1})
    payment = (await _pay(routed, merchant)).json()
    assert payment["status"] == "declined"
    assert payment["decline"] == {"code": "stolen_card", "category": "hard", "message": payment["decline"]["message"]}
    assert [a["provider"] for a in payment["routing"]["attempts"]] == ["stripe"]


async def test_methods_a_provider_lacks_are_routed_past_it(routed, routed_app, admin):
    merchant = await _merchant(routed_app, "adyen", "stripe")
    body = {"currency": "JPY", "amount": 1500, "payment_method": {"type": "konbini"}}
    payment = (await routed.post("/v1/payments", json=body, headers=merchant.headers)).json()
    assert payment["provider"] == "stripe"
    assert payment["status"] == "requires_action"


async def test_no_provider_for_the_method_is_a_clear_400(routed, routed_app):
    merchant = await _merchant(routed_app, "stripe")
    body = {"payment_method": {"type": "wallet", "wallet": {"type": "gopay"}}, "amount": 10000, "currency": "IDR"}
    response = await routed.post("/v1/payments", json=body, headers=merchant.headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_route"


async def test_konbini_completes_through_a_signed_webhook_and_duplicates_are_harmless(routed, routed_app, admin, hooks):
    await admin.knobs("stripe", auto_complete=False, webhook={"url": hooks.url("stripe"), "duplicates": 1})
    merchant = await _merchant(routed_app, "stripe")
    body = {"currency": "JPY", "amount": 1500, "payment_method": {"type": "konbini"}}
    payment = (await routed.post("/v1/payments", json=body, headers=merchant.headers)).json()
    assert payment["status"] == "requires_action"
    assert payment["next_action"]["type"] == "voucher"
    await admin.complete("stripe", payment["provider_reference"], status="succeeded")
    first = await _deliver(routed, hooks, "stripe", index=0, count=2)
    assert first.status_code == 200, first.text
    assert first.json()["applied"] == 1
    second = await _deliver(routed, hooks, "stripe", index=1, count=2)
    assert second.json()["duplicate"] == 1
    current = (await routed.get(f"/v1/payments/{payment['id']}", headers=merchant.headers)).json()
    assert current["status"] == "captured" and current["amount_captured"] == 1500
    journal = await routed_app.state.pool.fetchval(
        "SELECT count(*) FROM journal_transactions WHERE payment_id = $1", payment["id"]
    )
    assert journal == 1
    assert (await verify_ledger(routed_app.state.pool)).ok


async def test_gopay_completes_through_the_midtrans_notification(routed, routed_app, admin, hooks):
    await admin.knobs("midtrans", auto_complete=False, webhook={"url": hooks.url("midtrans")})
    merchant = await _merchant(routed_app, "midtrans")
    body = {
        "currency": "IDR",
        "amount": 5_000_000,
        "payment_method": {"type": "wallet", "wallet": {"type": "gopay", "return_url": "https://shop.example/done"}},
    }
    payment = (await routed.post("/v1/payments", json=body, headers=merchant.headers)).json()
    assert payment["status"] == "requires_action", payment
    await admin.complete("midtrans", payment["provider_reference"], status="succeeded")
    delivered = await _deliver(routed, hooks, "midtrans")
    assert delivered.json()["applied"] == 1
    current = (await routed.get(f"/v1/payments/{payment['id']}", headers=merchant.headers)).json()
    assert current["status"] == "captured"


async def test_a_forged_notification_is_rejected_and_counted(routed, routed_app, admin, hooks):
    await admin.knobs("stripe", auto_complete=False, webhook={"url": hooks.url("stripe")})
    merchant = await _merchant(routed_app, "stripe")
    body = {"currency": "JPY", "amount": 1500, "payment_method": {"type": "konbini"}}
    payment = (await routed.post("/v1/payments", json=body, headers=merchant.headers)).json()
    await admin.complete("stripe", payment["provider_reference"], status="succeeded")
    headers, raw, _ = (await hooks.wait_for("stripe"))[-1]
    forged = json.loads(raw)
    forged["data"]["object"]["amount_received"] = 1
    forward = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    response = await routed.post("/webhooks/stripe", content=json.dumps(forged).encode(), headers=forward)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "webhook_rejected"
    still = (await routed.get(f"/v1/payments/{payment['id']}", headers=merchant.headers)).json()
    assert still["status"] == "requires_action"
    metrics = (await routed.get("/metrics")).text
    assert 'switch_webhooks_rejected_total{provider="stripe",reason="bad_signature"}' in metrics


async def test_notifications_for_unknown_accounts_are_404(routed):
    response = await routed.post("/webhooks/nobody", content=b"{}")
    assert response.status_code == 404


async def test_sandbox_takes_no_webhooks(routed):
    response = await routed.post("/webhooks/sandbox", content=b"{}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "webhooks_not_supported"


async def _complete_by_webhook(routed, routed_app, admin, hooks, provider, body, settle_status="succeeded"):
    await admin.knobs(provider, auto_complete=False, webhook={"url": hooks.url(provider)})
    merchant = await _merchant(routed_app, provider)
    created = await routed.post("/v1/payments", json=body, headers=merchant.headers)
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["provider_reference"], payment
    await admin.complete(provider, payment["provider_reference"], status=settle_status)
    delivered = await _deliver(routed, hooks, provider)
    current = (await routed.get(f"/v1/payments/{payment['id']}", headers=merchant.headers)).json()
    return payment, delivered, current


async def test_grabpay_completes_through_the_xendit_callback(routed, routed_app, admin, hooks):
    body = {
        "currency": "PHP",
        "amount": 125_000,
        "payment_method": {"type": "wallet", "wallet": {"type": "grabpay", "return_url": "https://shop.example/r"}},
    }
    payment, delivered, current = await _complete_by_webhook(routed, routed_app, admin, hooks, "xendit", body)
    assert payment["status"] == "requires_action"
    assert payment["next_action"]
    assert delivered.json()["applied"] == 1
    assert current["status"] == "captured"


async def test_pingpong_hosted_checkout_completes_and_gets_its_ok(routed, routed_app, admin, hooks):
    body = {
        "currency": "USD",
        "amount": 125_000,
        "payment_method": {"type": "hosted_checkout", "hosted_checkout": {"return_url": "https://shop.example/r"}},
    }
    payment, delivered, current = await _complete_by_webhook(routed, routed_app, admin, hooks, "pingpong", body)
    assert payment["status"] == "requires_action"
    assert payment["next_action"]["type"] == "redirect_to_url"
    assert delivered.status_code == 200
    assert delivered.text == "OK"
    assert current["status"] == "captured"


async def test_sepa_debit_is_pending_until_settled(routed, routed_app, admin, hooks):
    body = {
        "currency": "EUR",
        "amount": 125_000,
        "payment_method": {
            "type": "sepa_debit",
            "sepa_debit": {
                "iban": "NL91 ABNA 0417 1643 00",
                "holder_name": "Ada Lovelace",
                "mandate_id": "MNDT-2024-001",
                "mandate_date": "2024-01-15",
            },
        },
    }
    payment, delivered, current = await _complete_by_webhook(routed, routed_app, admin, hooks, "sepa", body)
    assert payment["status"] == "pending", payment
    assert payment["payment_method"]["sepa_debit"] == {
        "country": "NL",
        "bank_code": "ABNA",
        "last4": "4300",
        "mandate_id": "MNDT-2024-001",
    }
    assert "0417164300" not in json.dumps(payment)
    assert delivered.json()["applied"] == 1
    assert current["status"] == "captured"
    assert (await verify_ledger(routed_app.state.pool)).ok


async def test_a_sepa_debit_without_its_mandate_date_is_refused(routed, routed_app):
    merchant = await _merchant(routed_app, "sepa")
    body = {
        "currency": "EUR",
        "amount": 100,
        "payment_method": {
            "type": "sepa_debit",
            "sepa_debit": {"iban": "NL91ABNA0417164300", "holder_name": "Ada", "mandate_id": "M-1"},
        },
    }
    response = await routed.post("/v1/payments", json=body, headers=merchant.headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "payment_method.sepa_debit.mandate_date"


async def test_an_invalid_iban_is_refused_before_any_provider_call(routed, routed_app):
    merchant = await _merchant(routed_app, "sepa")
    body = {
        "currency": "EUR",
        "amount": 100,
        "payment_method": {"type": "sepa_debit", "sepa_debit": {"iban": "NL91ABNA0417164301", "holder_name": "A"}},
    }
    response = await routed.post("/v1/payments", json=body, headers=merchant.headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_iban", "payment_method.sepa_debit.iban")


async def test_a_sepa_return_after_settlement_is_booked_as_a_bank_refund(routed, routed_app, admin, hooks):
    body = {
        "currency": "EUR",
        "amount": 80_000,
        "payment_method": {
            "type": "sepa_debit",
            "sepa_debit": {
                "iban": "NL91ABNA0417164300",
                "holder_name": "Ada Lovelace",
                "mandate_id": "MNDT-2024-002",
                "mandate_date": "2024-02-01",
            },
        },
    }
    payment, _, settled = await _complete_by_webhook(routed, routed_app, admin, hooks, "sepa", body)
    assert settled["status"] == "captured"
    await admin.complete("sepa", payment["provider_reference"], status="returned", code="MD06", r_type="refund")
    returned = await _deliver(routed, hooks, "sepa", count=2)
    assert returned.json()["applied"] == 1
    pool = routed_app.state.pool
    row = await pool.fetchrow("SELECT status, amount_refunded FROM payments WHERE id = $1", payment["id"])
    assert (row["status"], row["amount_refunded"]) == ("refunded", 80_000)
    reason = await pool.fetchval("SELECT reason FROM refunds WHERE payment_id = $1", payment["id"])
    assert reason == "provider_reversal:MD06"
    assert (await verify_ledger(pool)).ok


async def test_a_token_authenticated_callback_is_confirmed_with_the_provider_first(routed, routed_app, admin, hooks):
    # Xendit authenticates callbacks with a static token that does not cover the body, so a
    # callback claiming success for a charge that is still pending must not settle it.
    await admin.knobs("xendit", auto_complete=False, webhook={"url": hooks.url("xendit")})
    merchant = await _merchant(routed_app, "xendit")
    body = {
        "currency": "PHP",
        "amount": 50_000,
        "payment_method": {"type": "wallet", "wallet": {"type": "grabpay", "return_url": "https://shop.example/r"}},
    }
    paid = (await routed.post("/v1/payments", json=body, headers=merchant.headers)).json()
    unpaid = (await routed.post("/v1/payments", json=body, headers=merchant.headers)).json()
    await admin.complete("xendit", paid["provider_reference"], status="succeeded")
    headers, raw, _ = (await hooks.wait_for("xendit"))[-1]
    forged = raw.replace(paid["provider_reference"].encode(), unpaid["provider_reference"].encode())
    forged = forged.replace(paid["id"].encode(), unpaid["id"].encode())
    forward = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    refused = await routed.post("/webhooks/xendit", content=forged, headers=forward)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "notification_unconfirmed"
    still = (await routed.get(f"/v1/payments/{unpaid['id']}", headers=merchant.headers)).json()
    assert still["status"] == "requires_action"
    genuine = await routed.post("/webhooks/xendit", content=raw, headers=forward)
    assert genuine.json()["applied"] == 1
