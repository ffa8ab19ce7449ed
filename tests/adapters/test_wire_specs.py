"""The JSON the Adyen and PayPal adapters send, validated against the providers' OpenAPI schemas.

Reads ``../shared/specs`` (next to the repository) when it exists; skipped otherwise.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from adapters.base import CaptureRequest, Outcome, RefundRequest, VoidRequest
from tests.adapters.conftest import CASES, Admin

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs"

pytestmark = [
    pytest.mark.skipif(not SPECS.is_dir(), reason=f"provider specs folder {SPECS} is absent"),
]
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is needed to validate against the specs")


@cache
def _doc(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SPECS / name).read_text())
    return document


def _validate(doc_name: str, schema_name: str, body: dict[str, Any]) -> None:
    doc = _doc(doc_name)
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    validator_cls = jsonschema.Draft202012Validator if doc["openapi"].startswith("3.1") else jsonschema.Draft7Validator
    errors = sorted(validator_cls(schema).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]


ADYEN_SCHEMAS = [
    (re.compile(r"/adyen/v71/payments$"), "PaymentRequest"),
    (re.compile(r"/adyen/v71/payments/[^/]+/captures$"), "PaymentCaptureRequest"),
    (re.compile(r"/adyen/v71/payments/[^/]+/cancels$"), "PaymentCancelRequest"),
    (re.compile(r"/adyen/v71/payments/[^/]+/refunds$"), "PaymentRefundRequest"),
]
PAYPAL_SCHEMAS = [
    (re.compile(r"/paypal/v2/checkout/orders$"), "checkout_orders_v2.json", "order_request"),
    (re.compile(r"/paypal/v2/checkout/orders/[^/]+/authorize$"), "checkout_orders_v2.json", "order_authorize_request"),
    (re.compile(r"/paypal/v2/checkout/orders/[^/]+/capture$"), "checkout_orders_v2.json", "order_capture_request"),
    (re.compile(r"/paypal/v2/payments/authorizations/[^/]+/capture$"), "payments_payment_v2.json", "capture_request"),
    (re.compile(r"/paypal/v2/payments/captures/[^/]+/refund$"), "payments_payment_v2.json", "refund_request"),
]


async def _full_cycle(name: str, simulator, capture: bool) -> None:
    case = next(c for c in CASES if c.name == name)
    adapter = case.adapter(simulator)
    try:
        request = case.authorize_request(capture=capture)
        auth = await adapter.authorize(request)
        assert auth.outcome is Outcome.APPROVED
        ref = auth.provider_reference or ""
        if not capture:
            await adapter.capture(
                CaptureRequest(
                    payment_id=request.payment_id,
                    provider_reference=ref,
                    idempotency_key="k-cap",
                    amount=request.amount,
                    currency=request.currency,
                )
            )
        await adapter.refund(
            RefundRequest(
                payment_id=request.payment_id,
                refund_id="re_1",
                provider_reference=ref,
                idempotency_key="k-ref",
                amount=100,
                currency=request.currency,
            )
        )
        second = await adapter.authorize(case.authorize_request(capture=False))
        await adapter.void(
            VoidRequest(
                payment_id=request.payment_id,
                provider_reference=second.provider_reference or "",
                idempotency_key="k-void",
                amount=request.amount,
                currency=request.currency,
            )
        )
    finally:
        await adapter.close()


@pytest.mark.parametrize("capture", [True, False])
async def test_adyen_requests_match_the_checkout_v71_schemas(simulator, admin: Admin, capture: bool) -> None:
    await _full_cycle("adyen", simulator, capture)
    checked = 0
    for provider, method, path, body in simulator.sim.requests_log:
        if provider != "adyen" or method != "POST":
            continue
        schema = next((s for pattern, s in ADYEN_SCHEMAS if pattern.search(path)), None)
        assert schema is not None, f"no schema for {path}"
        _validate("adyen/CheckoutService-v71.json", schema, json.loads(body))
        checked += 1
    assert checked >= (4 if capture else 5)


@pytest.mark.parametrize("capture", [True, False])
async def test_paypal_requests_match_the_orders_and_payments_v2_schemas(simulator, admin: Admin, capture: bool) -> None:
    await _full_cycle("paypal", simulator, capture)
    checked = 0
    for provider, method, path, body in simulator.sim.requests_log:
        if provider != "paypal" or method != "POST" or path.endswith(("/oauth2/token", "/void")):
            continue
        match = next(((doc, s) for pattern, doc, s in PAYPAL_SCHEMAS if pattern.search(path)), None)
        assert match is not None, f"no schema for {path}"
        _validate(f"paypal/{match[0]}", match[1], json.loads(body) if body else {})
        checked += 1
    # A card order is processed by its create call: no order capture/authorize follows it.
    assert checked >= (3 if capture else 4)
    order_steps = [
        path
        for provider, method, path, _ in simulator.sim.requests_log
        if provider == "paypal" and re.search(r"/v2/checkout/orders/[^/]+/(capture|authorize)$", path)
    ]
    assert order_steps == []


def test_paypal_processor_response_map_covers_every_code_in_the_spec() -> None:
    from adapters.paypal.transformers import PROCESSOR_RESPONSE_MAP

    schema = _doc("paypal/payments_payment_v2.json")["components"]["schemas"]["processor_response"]
    codes = set(schema["properties"]["response_code"]["enum"])
    assert codes - set(PROCESSOR_RESPONSE_MAP) == set()


def test_the_schema_check_catches_a_wrong_amount_type() -> None:
    bad = {
        "amount": {"currency": "EUR", "value": "12.50"},
        "merchantAccount": "M",
        "reference": "r",
        "returnUrl": "https://x",
        "paymentMethod": {"type": "scheme"},
    }
    with pytest.raises(AssertionError):
        _validate("adyen/CheckoutService-v71.json", "PaymentRequest", bad)
    with pytest.raises(AssertionError):
        _validate(
            "paypal/checkout_orders_v2.json",
            "order_request",
            {"intent": "AUTHORIZE", "purchase_units": [{"amount": {"currency_code": "USD", "value": 10.99}}]},
        )
