"""Payment statuses and the rules for moving between them (pure functions, no I/O)."""

from __future__ import annotations

import msgspec

from switch.errors import PaymentError

# Statuses in which money has been authorized and may still move.
AUTHORIZED_FAMILY = frozenset({"authorized", "partially_captured", "captured", "partially_refunded", "refunded"})
FINAL_UNSUCCESSFUL = frozenset({"declined", "failed", "voided"})
# Authorized at the provider but held for a person's decision: no capture, void or refund until
# its review is approved (-> authorized) or rejected (-> authorized, then voided).
IN_REVIEW = "in_review"


class PaymentState(msgspec.Struct, kw_only=True):
    """The money-relevant state of one payment.

    Attributes:
        status: Base status; for authorized payments it is re-derived from the amounts.
        amount: Authorized amount in minor units.
        amount_captured: Sum of captures.
        amount_refunded: Sum of refunds.
        capture_closed: True once no further capture is possible (final or full capture).
    """

    status: str
    amount: int
    amount_captured: int = 0
    amount_refunded: int = 0
    capture_closed: bool = False


def derive_status(state: PaymentState) -> str:
    """Return the status implied by the amounts of an authorized payment.

    Statuses outside the authorized family (declined, voided, pending, ...) are returned as is.
    """
    if state.status not in AUTHORIZED_FAMILY:
        return state.status
    if state.amount_refunded > 0:
        full = state.capture_closed and state.amount_refunded == state.amount_captured
        return "refunded" if full else "partially_refunded"
    if state.amount_captured > 0:
        return "captured" if state.capture_closed else "partially_captured"
    return "authorized"


def capturable(state: PaymentState) -> int:
    """Return how much may still be captured."""
    if state.status not in AUTHORIZED_FAMILY or state.capture_closed:
        return 0
    return state.amount - state.amount_captured


def refundable(state: PaymentState) -> int:
    """Return how much may still be refunded."""
    if state.status not in AUTHORIZED_FAMILY:
        return 0
    return state.amount_captured - state.amount_refunded


def _refuse_unless_authorized(state: PaymentState, action: str) -> None:
    if state.status == IN_REVIEW:
        raise PaymentError(
            "state",
            "payment_in_review",
            f"the payment is in review and cannot be {action} directly; approve or reject its review",
        )
    if state.status == "voided":
        raise PaymentError("state", "payment_already_voided", f"the payment was voided and cannot be {action}")
    if state.status in ("declined", "failed"):
        raise PaymentError("state", "payment_not_authorized", f"the payment was {state.status} and cannot be {action}")
    if state.status not in AUTHORIZED_FAMILY:
        raise PaymentError(
            "state",
            "payment_not_authorized",
            f"the payment is {state.status}; it can be {action} only once authorized",
        )


def leave_review(state: PaymentState) -> PaymentState:
    """The state of a payment whose review closed: authorized, nothing captured yet.

    Both outcomes pass through ``authorized``: an approval then captures (or waits for a manual
    capture), a rejection then voids.

    Raises:
        PaymentError: ``payment_not_in_review`` (409) when the payment is not ``in_review``.
    """
    if state.status != IN_REVIEW:
        raise PaymentError("state", "payment_not_in_review", f"the payment is {state.status}, not in review")
    return PaymentState(status="authorized", amount=state.amount)


def check_capture(state: PaymentState, amount: int | None) -> int:
    """Validate a capture and return the amount to capture.

    Args:
        state: The payment's current state.
        amount: Requested amount, or None for everything still capturable.

    Raises:
        PaymentError: ``payment_in_review``, ``payment_already_voided``, ``payment_not_authorized``,
            ``payment_already_captured`` (409) or ``amount_exceeds_capturable`` (400).
    """
    _refuse_unless_authorized(state, "captured")
    remaining = capturable(state)
    if remaining == 0:
        raise PaymentError(
            "state", "payment_already_captured", "the payment has been captured; nothing remains to capture"
        )
    if amount is None:
        return remaining
    if amount > remaining:
        raise PaymentError(
            "amount",
            "amount_exceeds_capturable",
            f"amount {amount} exceeds the {remaining} that can still be captured",
            "amount",
        )
    return amount


def check_void(state: PaymentState) -> None:
    """Validate a void (release of an uncaptured authorization).

    Raises:
        PaymentError: ``payment_in_review``, ``payment_already_voided``, ``payment_not_authorized``
            or ``payment_already_captured`` (all 409).
    """
    _refuse_unless_authorized(state, "voided")
    if state.amount_captured > 0 or state.capture_closed:
        raise PaymentError(
            "state",
            "payment_already_captured",
            "the payment has captured funds and cannot be voided; refund it instead",
        )


def check_refund(state: PaymentState, amount: int | None) -> int:
    """Validate a refund and return the amount to refund.

    Raises:
        PaymentError: ``payment_in_review``, ``payment_already_voided``, ``payment_not_authorized``,
            ``payment_not_captured``, ``payment_already_refunded`` (409) or
            ``amount_exceeds_refundable`` (400).
    """
    _refuse_unless_authorized(state, "refunded")
    if state.amount_captured == 0:
        raise PaymentError("state", "payment_not_captured", "the payment has no captured funds to refund")
    remaining = refundable(state)
    if remaining == 0:
        raise PaymentError("state", "payment_already_refunded", "the captured amount has been fully refunded")
    if amount is None:
        return remaining
    if amount > remaining:
        raise PaymentError(
            "amount",
            "amount_exceeds_refundable",
            f"amount {amount} exceeds the {remaining} that can still be refunded",
            "amount",
        )
    return amount
