"""SEPA: IBAN/BIC checks, pain.008/pain.001 against the XSD, batches, settlement, R-transactions."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import aiohttp
import pytest
import xmlschema
from stdnum import iban

from adapters.base import AuthorizeRequest, Credentials, Outcome, RefundRequest, SyncRequest, WebhookRejected
from adapters.sepa import PayoutRequest, SepaAdapter, sign_notification
from adapters.sepa import transformers as t
from tests.adapters.conftest import Admin, Receiver, authorize_request
from tests.adapters.extra_cases import SEPA_DEBTOR, SEPA_EXTRA, SEPA_HMAC_KEY

CREDITOR = t.Creditor(name="Switch Merchant GmbH", iban="DE89370400440532013000", creditor_id="DE98ZZZ09999999999")


def _adapter(simulator) -> SepaAdapter:
    return SepaAdapter(
        Credentials(
            api_key="sepa-gateway-token",
            webhook_secret=SEPA_HMAC_KEY,
            base_url=simulator.url_for("sepa"),
            extra=SEPA_EXTRA,
        ),
        total_timeout=5.0,
    )


def _request(amount: int = 4_990, **details: str) -> AuthorizeRequest:
    return authorize_request(
        amount=amount,
        currency="EUR",
        method_type="sepa_debit",
        customer_name="Ada Lovelace",
        details={**SEPA_DEBTOR, **details},
    )


def _debit(e2e: str, iban: str = "NL91ABNA0417164300", amount: int = 1_000) -> dict:
    return {
        "name": "Debtor " + e2e,
        "IBAN": iban,
        "amount": amount,
        "type": "RCUR",
        "collection_date": dt.date(2026, 12, 1),
        "mandate_id": "M-" + e2e,
        "mandate_date": dt.date(2024, 1, 1),
        "description": "subscription",
        "endtoend_id": e2e,
    }


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("DE89370400440532013001", "check digits"),
        ("DE8937040044053201300", "check digits"),  # stdnum checks mod-97 before the format
        # Right check digits, one digit short for Germany.
        ("DE" + iban.calc_check_digits("DE00370400440532013") + "370400440532013", "country's IBAN format"),
        ("DE89!70400440532013000", "IBAN"),
        ("", "IBAN"),
    ],
)
def test_invalid_ibans_are_explained_and_masked(value, fragment) -> None:
    with pytest.raises(t.InvalidBankDetails) as info:
        t.validate_iban(value)
    assert info.value.code == "AC01"
    assert fragment in str(info.value)
    assert "0532013" not in str(info.value)  # the account number never appears in full


def test_valid_iban_is_compacted() -> None:
    assert t.validate_iban("GB82 WEST 1234 5698 7654 32") == "GB82WEST12345698765432"


@pytest.mark.parametrize(
    ("value", "fragment"), [("COBA", "8 or 11"), ("C0BADEFF", "4 letters"), ("COBAXXFF", "country")]
)
def test_invalid_bics_are_explained(value, fragment) -> None:
    with pytest.raises(t.InvalidBankDetails) as info:
        t.validate_bic(value)
    assert info.value.code == "RC01" and fragment in str(info.value)
    assert t.validate_bic("cobadeffxxx") == "COBADEFFXXX"


def test_pain008_and_pain001_conform_to_the_bundled_xsd() -> None:
    debit = t.build_pain008(CREDITOR, t.message_id("k"), [_debit("e2e-1"), _debit("e2e-2", amount=2_550)])
    assert b"<NbOfTxs>2</NbOfTxs>" in debit and b"<CtrlSum>35.50</CtrlSum>" in debit
    assert b"<MndtId>M-e2e-1</MndtId>" in debit and b"<CdtrSchmeId>" in debit
    t.validate_xml(debit, t.PAIN_008_VERSION)
    transfer = t.build_pain001(
        CREDITOR,
        t.message_id("k2"),
        [
            {
                "name": "Ada",
                "IBAN": "NL91ABNA0417164300",
                "amount": 1_005,
                "execution_date": dt.date(2026, 12, 1),
                "description": "refund",
                "endtoend_id": "re-1",
            }
        ],
    )
    assert b'<InstdAmt Ccy="EUR">10.05</InstdAmt>' in transfer
    t.validate_xml(transfer, t.PAIN_001_VERSION)
    # The validation is real: a debit without its end-to-end id, or in a made-up currency, does not conform.
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        t.validate_xml(debit.replace(b"<EndToEndId>e2e-1</EndToEndId>", b""), t.PAIN_008_VERSION)
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        t.validate_xml(debit.replace(b'Ccy="EUR"', b'Ccy="EURO"'), t.PAIN_008_VERSION)


def test_the_message_id_is_derived_from_the_idempotency_key() -> None:
    first = t.build_pain008(CREDITOR, t.message_id("same-key"), [_debit("e2e-1")])
    again = t.build_pain008(CREDITOR, t.message_id("same-key"), [_debit("e2e-1")])
    assert t.message_id("same-key") == t.message_id("same-key") != t.message_id("other")
    assert len(t.message_id("x")) <= 35
    marker = b"<MsgId>" + t.message_id("same-key").encode() + b"</MsgId>"
    assert marker in first and marker in again


@pytest.mark.parametrize(("amount", "currency"), [(100, "USD"), (0, "EUR"), (10**11, "EUR")])
def test_sepa_refuses_amounts_it_cannot_carry(amount, currency) -> None:
    with pytest.raises(t.AmountNotRepresentable):
        t.to_sepa_amount(amount, currency)


async def test_bad_debtor_details_are_refused_before_anything_is_sent(simulator, admin: Admin) -> None:
    adapter = _adapter(simulator)
    try:
        bad_iban = await adapter.authorize(_request(iban="DE89370400440532013001"))
        no_mandate = await adapter.authorize(_request(mandate_id=""))
        bad_bic = await adapter.authorize(_request(bic="C0BADEFF"))
        usd = await adapter.authorize(AuthorizeRequest(**{**msgspec_fields(_request()), "currency": "USD"}))
    finally:
        await adapter.close()
    assert (bad_iban.outcome, bad_iban.code) == (Outcome.DECLINED_HARD, "AC01")
    assert (no_mandate.outcome, no_mandate.code) == (Outcome.DECLINED_HARD, "MD02")
    assert (bad_bic.outcome, bad_bic.code) == (Outcome.DECLINED_HARD, "RC01")
    assert usd.outcome is Outcome.TECHNICAL
    assert simulator.sim.providers["sepa"].items == {}


def msgspec_fields(request: AuthorizeRequest) -> dict:
    return {f: getattr(request, f) for f in request.__struct_fields__}


async def test_debit_is_pending_and_settles_after_the_configured_delay(
    simulator, admin: Admin, receiver: Receiver
) -> None:
    await admin.knobs("sepa", settle_delay_ms=300, webhook={"url": receiver.url("sepa")})
    adapter = _adapter(simulator)
    request = _request()
    try:
        started = time.monotonic()
        result = await adapter.authorize(request)
        early = await adapter.sync(SyncRequest(payment_id="p", provider_reference=None, attempt_id=request.attempt_id))
        deliveries = await receiver.wait_for("sepa")
        settled_after = time.monotonic() - started
        late = await adapter.sync(SyncRequest(payment_id="p", provider_reference=None, attempt_id=request.attempt_id))
    finally:
        await adapter.close()
    assert (result.outcome, result.raw_status, result.amount) == (Outcome.PENDING, "PDNG", 4_990)
    assert result.provider_reference == request.attempt_id
    assert early.outcome is Outcome.PENDING
    assert settled_after >= 0.3
    event = adapter.parse_webhook(deliveries[0][0], deliveries[0][1])[0]
    assert (event.event_type, event.outcome, event.raw_status) == ("transaction.settled", Outcome.APPROVED, "ACSC")
    assert (event.amount, event.currency, event.provider_reference) == (4_990, "EUR", request.attempt_id)
    assert late.outcome is Outcome.APPROVED


async def test_gateway_takes_a_batch_and_returns_one_item_with_an_r_code(
    simulator, admin: Admin, receiver: Receiver
) -> None:
    await admin.knobs("sepa", auto_complete=False, webhook={"url": receiver.url("sepa")})
    xml = t.build_pain008(
        CREDITOR, t.message_id(uuid.uuid4().hex), [_debit("b-1"), _debit("b-2"), _debit("b-3", iban="DE0012")]
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            simulator.url_for("sepa") + "/v1/batches",
            data=xml,
            headers={"Authorization": "Bearer x", "Content-Type": "application/xml"},
        ) as response,
    ):
        answer = await response.json()
    statuses = {i["end_to_end_id"]: (i["status"], i["reason_code"]) for i in answer["transactions"]}
    # The gateway checks each IBAN: the broken one is rejected at once with AC01.
    assert statuses == {"b-1": ("PDNG", None), "b-2": ("PDNG", None), "b-3": ("RJCT", "AC01")}
    await admin.complete("sepa", "b-1", status="succeeded")
    await admin.complete("sepa", "b-2", status="succeeded")
    await admin.complete("sepa", "b-2", status="returned", code="MD06", r_type="refund")
    deliveries = await receiver.wait_for("sepa", count=3)
    adapter = _adapter(simulator)
    events = [adapter.parse_webhook(h, b)[0] for h, b, _ in deliveries]
    by_type = {(e.provider_reference, e.event_type): e for e in events}
    assert by_type["b-1", "transaction.settled"].outcome is Outcome.APPROVED
    returned = by_type["b-2", "transaction.returned"]
    assert (returned.outcome, returned.code, returned.raw_status) == (Outcome.DECLINED_HARD, "MD06", "RTND")
    synced = await adapter.sync(SyncRequest(payment_id="p", provider_reference="b-2", attempt_id="b-2"))
    await adapter.close()
    assert (synced.outcome, synced.code, synced.message) == (Outcome.DECLINED_HARD, "MD06", "R-transaction: refund")


async def test_a_file_that_fails_the_schema_is_rejected_ff01(simulator, admin: Admin) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            simulator.url_for("sepa") + "/v1/batches",
            data=b"<Document><nonsense/></Document>",
            headers={"Authorization": "Bearer x", "Content-Type": "application/xml"},
        ) as response,
    ):
        answer = await response.json()
    assert (answer["group_status"], answer["reason_code"]) == ("RJCT", "FF01")
    assert t.classify_reason("FF01") is Outcome.TECHNICAL


async def test_resubmitting_with_the_same_key_is_answered_from_the_first_report(simulator, admin: Admin) -> None:
    await admin.knobs("sepa", auto_complete=False)
    adapter = _adapter(simulator)
    request = _request()
    try:
        first = await adapter.authorize(request)
        again = await adapter.authorize(request)
    finally:
        await adapter.close()
    assert first == again
    assert len(simulator.sim.providers["sepa"].batches) == 1


async def test_refund_sends_a_credit_transfer_to_the_debtor(simulator, admin: Admin) -> None:
    await admin.knobs("sepa", auto_complete=False)
    adapter = _adapter(simulator)
    request = _request()

    def refund(amount: int) -> RefundRequest:
        return RefundRequest(
            payment_id=request.payment_id,
            refund_id=f"re_{uuid.uuid4().hex[:8]}",
            provider_reference=request.attempt_id,
            idempotency_key=uuid.uuid4().hex,
            amount=amount,
            currency="EUR",
        )

    try:
        await adapter.authorize(request)
        too_early = await adapter.refund(refund(1_000))
        await admin.complete("sepa", request.attempt_id, status="succeeded")
        refunded = await adapter.refund(refund(1_000))
    finally:
        await adapter.close()
    assert (too_early.outcome, too_early.code) == (Outcome.DECLINED_HARD, "NOT_SETTLED")
    assert (refunded.outcome, refunded.raw_status, refunded.amount) == (Outcome.PENDING, "PDNG", 1_000)
    transfer = simulator.sim.providers["sepa"].items[refunded.provider_reference]
    assert transfer["kind"] == "credit_transfer"
    assert (transfer["counterparty_iban"], transfer["counterparty_name"]) == (SEPA_DEBTOR["iban"], "Ada Lovelace")
    sent = simulator.sim.requests_log[-1][3]
    assert b"pain.001.001.09" in sent and b'<InstdAmt Ccy="EUR">10.00</InstdAmt>' in sent


async def test_payout_to_a_wrong_bic_is_refused_rc01(simulator, admin: Admin) -> None:
    adapter = _adapter(simulator)
    payout = PayoutRequest(
        payout_id="po_1",
        idempotency_key="k",
        amount=500,
        currency="EUR",
        creditor_name="Grace",
        iban="NL91ABNA0417164300",
        bic="ABNA",
    )
    try:
        result = await adapter.credit_transfer(payout)
    finally:
        await adapter.close()
    assert (result.outcome, result.code) == (Outcome.DECLINED_HARD, "RC01")
    assert "NL91" not in repr(payout)


async def test_forged_stale_and_duplicate_notifications(simulator, admin: Admin, receiver: Receiver) -> None:
    await admin.knobs("sepa", webhook={"url": receiver.url("sepa"), "duplicates": 2})
    adapter = _adapter(simulator)
    try:
        await adapter.authorize(_request())
        deliveries = await receiver.wait_for("sepa", count=3)
    finally:
        await adapter.close()
    await asyncio.sleep(0)
    events = [adapter.parse_webhook(h, b)[0] for h, b, _ in deliveries[:3]]
    assert len({e.event_id for e in events}) == 1  # duplicates are recognisable
    headers, body, _ = deliveries[0]
    with pytest.raises(WebhookRejected) as info:
        adapter.parse_webhook(headers, body.replace(b'"ACSC"', b'"RTND"'))
    assert info.value.reason == "bad_signature"
    with pytest.raises(WebhookRejected) as info:
        adapter.parse_webhook({"Sepa-Signature": sign_notification(SEPA_HMAC_KEY, body, timestamp=1_000_000)}, body)
    assert info.value.reason == "stale"
    with pytest.raises(WebhookRejected):
        adapter.parse_webhook({"Sepa-Signature": sign_notification("another-key", body)}, body)
    with pytest.raises(WebhookRejected):
        adapter.parse_webhook({}, body)
