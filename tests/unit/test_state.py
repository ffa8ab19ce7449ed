"""The payment state machine's pure rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.errors import PaymentError
from switch.payments.state import (
    PaymentState,
    capturable,
    check_capture,
    check_refund,
    check_void,
    derive_status,
    leave_review,
    refundable,
)


def state(**kwargs) -> PaymentState:
    return PaymentState(**{"status": "authorized", "amount": 1000, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "authorized"),
        ({"amount_captured": 10}, "partially_captured"),
        ({"amount_captured": 1000, "capture_closed": True}, "captured"),
        ({"amount_captured": 10, "capture_closed": True}, "captured"),
        ({"amount_captured": 1000, "capture_closed": True, "amount_refunded": 1}, "partially_refunded"),
        ({"amount_captured": 1000, "capture_closed": True, "amount_refunded": 1000}, "refunded"),
        ({"amount_captured": 500, "amount_refunded": 500}, "partially_refunded"),
        ({"status": "voided"}, "voided"),
        ({"status": "declined"}, "declined"),
    ],
)
def test_status_follows_the_amounts(kwargs, expected):
    assert derive_status(state(**kwargs)) == expected


def test_capture_without_amount_takes_everything_capturable():
    assert check_capture(state(amount_captured=300), None) == 700


@pytest.mark.parametrize(
    ("kwargs", "call", "code"),
    [
        ({"status": "voided"}, lambda s: check_capture(s, None), "payment_already_voided"),
        ({"status": "declined"}, lambda s: check_capture(s, None), "payment_not_authorized"),
        ({"status": "requires_action"}, lambda s: check_capture(s, None), "payment_not_authorized"),
        ({"capture_closed": True, "amount_captured": 1000}, lambda s: check_capture(s, 1), "payment_already_captured"),
        ({}, lambda s: check_capture(s, 1001), "amount_exceeds_capturable"),
        ({"amount_captured": 1}, check_void, "payment_already_captured"),
        ({"status": "voided"}, check_void, "payment_already_voided"),
        ({}, lambda s: check_refund(s, None), "payment_not_captured"),
        ({"amount_captured": 100}, lambda s: check_refund(s, 101), "amount_exceeds_refundable"),
        ({"amount_captured": 100, "amount_refunded": 100}, lambda s: check_refund(s, 1), "payment_already_refunded"),
    ],
)
def test_refusals_carry_precise_codes(kwargs, call, code):
    with pytest.raises(PaymentError) as raised:
        call(state(**kwargs))
    assert raised.value.code == code


@given(
    amount=st.integers(1, 10**15),
    captured=st.integers(0, 10**15),
    refunded=st.integers(0, 10**15),
    closed=st.booleans(),
)
def test_capturable_and_refundable_never_go_negative(amount, captured, refunded, closed):
    captured = min(captured, amount)
    refunded = min(refunded, captured)
    current = state(amount=amount, amount_captured=captured, amount_refunded=refunded, capture_closed=closed)
    assert 0 <= capturable(current) <= amount - captured
    assert refundable(current) == captured - refunded


@pytest.mark.parametrize(
    "call",
    [lambda s: check_capture(s, None), lambda s: check_capture(s, 10), check_void, lambda s: check_refund(s, None)],
)
def test_a_payment_in_review_cannot_be_captured_voided_or_refunded_directly(call):
    with pytest.raises(PaymentError) as raised:
        call(state(status="in_review"))
    assert raised.value.code == "payment_in_review"
    assert raised.value.kind == "state"


def test_a_payment_in_review_holds_nothing_capturable_or_refundable():
    held = state(status="in_review")
    assert derive_status(held) == "in_review"
    assert capturable(held) == 0
    assert refundable(held) == 0


def test_leaving_review_makes_the_payment_authorized_with_nothing_captured():
    left = leave_review(state(status="in_review", amount=4200))
    assert (left.status, left.amount, left.amount_captured, left.capture_closed) == ("authorized", 4200, 0, False)
    assert capturable(left) == 4200
    check_void(left)


@pytest.mark.parametrize("status", ["authorized", "captured", "voided", "declined", "pending"])
def test_only_a_payment_in_review_can_leave_review(status):
    with pytest.raises(PaymentError) as raised:
        leave_review(state(status=status))
    assert raised.value.code == "payment_not_in_review"
