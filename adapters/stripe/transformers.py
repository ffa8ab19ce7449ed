"""Stripe wire types, amount conventions and the one status and decline map.

Stripe takes form-encoded requests and answers JSON PaymentIntents (shapes as in Stripe's
``fixtures3.json``). Amounts are in Stripe's "smallest unit", which is ISO 4217's minor unit except
for the currencies listed below.
"""

from __future__ import annotations

from typing import Any

import msgspec

from adapters.base import Outcome, currency_exponent

# Stripe's zero-decimal list. MGA is ISO exponent 2 but zero-decimal at Stripe.
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
# Three-decimal currencies: Stripe takes ISO minor units but the last digit must be 0.
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# ISK is ISO exponent 0, but Stripe keeps the two-decimal representation (decimals always 00).
TWO_DECIMAL_SPECIAL = frozenset({"ISK"})


class AmountNotRepresentable(ValueError):
    """The amount cannot be sent to Stripe in this currency without rounding."""


def to_stripe_amount(amount: int, currency: str) -> int:
    """Convert ISO minor units to Stripe's smallest unit.

    Raises:
        AmountNotRepresentable: When Stripe would need a rounded amount (KWD 1.005, MGA 10.50).
    """
    code = currency.upper()
    exponent = currency_exponent(code)
    if code in TWO_DECIMAL_SPECIAL:
        return amount * 10 ** (2 - exponent)
    if code in ZERO_DECIMAL:
        scale = 10**exponent
        if amount % scale:
            raise AmountNotRepresentable(f"{code} amounts must be whole units at Stripe")
        return amount // scale
    if code in THREE_DECIMAL and amount % 10:
        raise AmountNotRepresentable(f"{code} amounts must end in 0 at Stripe")
    return amount


def from_stripe_amount(value: int, currency: str) -> int:
    """Convert Stripe's smallest unit back to ISO minor units."""
    code = currency.upper()
    exponent = currency_exponent(code)
    if code in TWO_DECIMAL_SPECIAL:
        return value // 10 ** (2 - exponent)
    if code in ZERO_DECIMAL:
        return value * 10**exponent
    return value


# PaymentIntent.status -> Outcome. ``requires_payment_method`` after a confirm means the attempt
# failed (the decline code then decides); ``processing`` is an asynchronous method in flight.
STATUS_MAP: dict[str, Outcome] = {
    "succeeded": Outcome.APPROVED,
    "requires_capture": Outcome.APPROVED,
    "processing": Outcome.PENDING,
    "requires_action": Outcome.REQUIRES_ACTION,
    "requires_confirmation": Outcome.REQUIRES_ACTION,
    "requires_payment_method": Outcome.DECLINED_SOFT,
    "canceled": Outcome.APPROVED,  # only reached by our own cancel (void) call
}

REFUND_STATUS_MAP: dict[str, Outcome] = {
    "succeeded": Outcome.APPROVED,
    "pending": Outcome.PENDING,
    "requires_action": Outcome.PENDING,
    "failed": Outcome.DECLINED_HARD,
    "canceled": Outcome.DECLINED_HARD,
}

# decline_code (or error code) -> Outcome, following the cascade rules (reference 4.8):
# hard never cascades and never retries; soft may be retried later on the same card but never
# cascades (the same card fails everywhere); technical is safe on the next provider.
DECLINE_MAP: dict[str, Outcome] = {
    # The issuer will never approve, or the customer must fix the data first.
    "stolen_card": Outcome.DECLINED_HARD,
    "lost_card": Outcome.DECLINED_HARD,
    "pickup_card": Outcome.DECLINED_HARD,
    "fraudulent": Outcome.DECLINED_HARD,
    "do_not_try_again": Outcome.DECLINED_HARD,
    "restricted_card": Outcome.DECLINED_HARD,
    "security_violation": Outcome.DECLINED_HARD,
    "invalid_account": Outcome.DECLINED_HARD,
    "new_account_information_available": Outcome.DECLINED_HARD,
    "revocation_of_authorization": Outcome.DECLINED_HARD,
    "revocation_of_all_authorizations": Outcome.DECLINED_HARD,
    "stop_payment_order": Outcome.DECLINED_HARD,
    "merchant_blacklist": Outcome.DECLINED_HARD,
    "expired_card": Outcome.DECLINED_HARD,
    "incorrect_number": Outcome.DECLINED_HARD,
    "invalid_number": Outcome.DECLINED_HARD,
    "invalid_expiry_month": Outcome.DECLINED_HARD,
    "invalid_expiry_year": Outcome.DECLINED_HARD,
    "incorrect_cvc": Outcome.DECLINED_HARD,
    "invalid_cvc": Outcome.DECLINED_HARD,
    "incorrect_zip": Outcome.DECLINED_HARD,
    "transaction_not_allowed": Outcome.DECLINED_HARD,
    "not_permitted": Outcome.DECLINED_HARD,
    "service_not_allowed": Outcome.DECLINED_HARD,
    # The design's sandbox treats Stripe's generic decline card as hard; keep the two in step.
    "generic_decline": Outcome.DECLINED_HARD,
    "card_declined": Outcome.DECLINED_HARD,
    # Cannot approve now: retry later on the same card, do not cascade.
    "insufficient_funds": Outcome.DECLINED_SOFT,
    "try_again_later": Outcome.DECLINED_SOFT,
    "do_not_honor": Outcome.DECLINED_SOFT,
    "card_velocity_exceeded": Outcome.DECLINED_SOFT,
    "withdrawal_count_limit_exceeded": Outcome.DECLINED_SOFT,
    "approve_with_id": Outcome.DECLINED_SOFT,
    "reenter_transaction": Outcome.DECLINED_SOFT,
    "call_issuer": Outcome.DECLINED_SOFT,
    "no_action_taken": Outcome.DECLINED_SOFT,
    # Re-run with 3DS on the same provider, never cascade.
    "authentication_required": Outcome.DECLINED_SOFT,
    # Availability failures and refusals by this acquirer the issuer never saw: cascade-safe.
    "processing_error": Outcome.TECHNICAL,
    "issuer_not_available": Outcome.TECHNICAL,
    "card_not_supported": Outcome.TECHNICAL,
    "currency_not_supported": Outcome.TECHNICAL,
    "duplicate_transaction": Outcome.DECLINED_HARD,
}

# Stripe error codes whose ``code`` is the decline itself (no separate decline_code).
CODE_IS_DECLINE = frozenset(
    {
        "expired_card",
        "incorrect_cvc",
        "incorrect_number",
        "invalid_cvc",
        "invalid_expiry_month",
        "invalid_expiry_year",
        "invalid_number",
        "processing_error",
        "incorrect_zip",
        "authentication_required",
    }
)


def classify_decline(code: str | None) -> Outcome:
    """Map a Stripe decline code; an unknown code is hard (the safe side: no cascade, no retry)."""
    if code is None:
        return Outcome.DECLINED_HARD
    return DECLINE_MAP.get(code, Outcome.DECLINED_HARD)


class StripeError(msgspec.Struct, kw_only=True):
    """The ``error`` object of a Stripe error response."""

    type: str = "api_error"
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    payment_intent: dict[str, Any] | str | None = None


class StripeErrorEnvelope(msgspec.Struct):
    """``{"error": {...}}``."""

    error: StripeError


class LastPaymentError(msgspec.Struct, kw_only=True):
    """``PaymentIntent.last_payment_error``."""

    code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    type: str | None = None


class PaymentIntent(msgspec.Struct, kw_only=True):
    """The fields of a Stripe PaymentIntent the adapter reads."""

    id: str
    object: str = "payment_intent"
    amount: int = 0
    amount_capturable: int = 0
    amount_received: int = 0
    currency: str = ""
    status: str = ""
    capture_method: str = "automatic"
    next_action: dict[str, Any] | None = None
    last_payment_error: LastPaymentError | None = None
    latest_charge: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    payment_method_types: list[str] = msgspec.field(default_factory=list)
    created: int = 0


class Refund(msgspec.Struct, kw_only=True):
    """The fields of a Stripe Refund the adapter reads."""

    id: str
    object: str = "refund"
    amount: int = 0
    currency: str = ""
    status: str = ""
    payment_intent: str | None = None
    failure_reason: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class RefundList(msgspec.Struct, kw_only=True):
    """``GET /v1/refunds?payment_intent=...`` answer."""

    data: list[Refund] = msgspec.field(default_factory=list)
    has_more: bool = False


class SearchResult(msgspec.Struct, kw_only=True):
    """``GET /v1/payment_intents/search`` answer."""

    data: list[PaymentIntent] = msgspec.field(default_factory=list)


class Event(msgspec.Struct, kw_only=True):
    """A Stripe webhook Event."""

    id: str
    type: str
    created: int = 0
    data: dict[str, Any] = msgspec.field(default_factory=dict)


# Webhook event type -> Outcome of the object it carries.
EVENT_MAP: dict[str, Outcome] = {
    "payment_intent.succeeded": Outcome.APPROVED,
    "payment_intent.amount_capturable_updated": Outcome.APPROVED,
    "payment_intent.payment_failed": Outcome.DECLINED_SOFT,
    "payment_intent.canceled": Outcome.DECLINED_HARD,
    "payment_intent.processing": Outcome.PENDING,
    "payment_intent.requires_action": Outcome.REQUIRES_ACTION,
    "charge.refunded": Outcome.APPROVED,
    "refund.updated": Outcome.APPROVED,
    "refund.failed": Outcome.DECLINED_HARD,
}
