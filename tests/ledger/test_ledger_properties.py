"""After any sequence of payment operations, the ledger's invariants hold and match the API."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switch.ledger.verify import verify_ledger
from tests.api.helpers import create

CARDS = ["4242424242424242", "4000000000000002", "4000000000000119", "4000002500003155", "4000000000000416"]

operation = st.one_of(
    st.tuples(
        st.just("create"),
        st.sampled_from(CARDS),
        st.integers(1, 10**6),
        st.sampled_from(["manual", "automatic"]),
        st.sampled_from(["EUR", "JPY", "KWD"]),
    ),
    st.tuples(st.just("capture"), st.integers(0, 7), st.integers(0, 10**6), st.booleans()),
    st.tuples(st.just("void"), st.integers(0, 7)),
    st.tuples(st.just("refund"), st.integers(0, 7), st.integers(0, 10**6)),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation, min_size=1, max_size=12))
async def test_random_operation_sequences_keep_the_ledger_verified(client, merchant, db, operations):
    payments: list[str] = []
    for op in operations:
        kind = op[0]
        if kind == "create":
            _, number, amount, capture, currency = op
            response = await create(client, merchant, number=number, amount=amount, capture=capture, currency=currency)
            assert response.status_code == 201, response.text
            payments.append(response.json()["id"])
            continue
        if not payments:
            continue
        payment_id = payments[op[1] % len(payments)]
        path = f"/v1/payments/{payment_id}"
        if kind == "capture":
            body = {"amount": op[2], "final": op[3]} if op[2] else {}
            response = await client.post(f"{path}/capture", json=body, headers=merchant.headers)
        elif kind == "void":
            response = await client.post(f"{path}/void", headers=merchant.headers)
        else:
            body = {"amount": op[2]} if op[2] else {}
            response = await client.post(f"{path}/refunds", json=body, headers=merchant.headers)
        assert response.status_code in (200, 201, 400, 409), response.text
    report = await verify_ledger(db)
    assert report.ok, report.render()
    for payment_id in payments:
        payment = (await client.get(f"/v1/payments/{payment_id}", headers=merchant.headers)).json()
        assert 0 <= payment["amount_refunded"] <= payment["amount_captured"] <= payment["amount"]
