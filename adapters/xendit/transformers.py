"""Xendit e-wallet (``/ewallets/charges``) wire conventions and the one status and failure map.

Xendit takes ``amount`` as a JSON number in major units: IDR and VND whole units, PHP, THB and
MYR with up to two decimals. The switch's integer minor units are converted here, exactly, with
``Decimal`` (IDR has two ISO minor digits but Xendit takes whole rupiah, so a fractional rupiah
amount is refused rather than rounded).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from adapters.base import Outcome, currency_exponent, decimal_to_minor, minor_to_decimal

# Decimals Xendit accepts per e-wallet currency.
XENDIT_DECIMALS: dict[str, int] = {"IDR": 0, "VND": 0, "PHP": 2, "THB": 2, "MYR": 2}

# The GrabPay channel per currency (GrabPay runs in PH and MY through Xendit).
GRABPAY_CHANNELS: dict[str, str] = {"PHP": "PH_GRABPAY", "MYR": "MY_GRABPAY"}

_number_encoder = msgspec.json.Encoder(decimal_format="number")


class AmountNotRepresentable(ValueError):
    """Xendit cannot take the amount in this currency without rounding."""


def to_xendit_amount(amount: int, currency: str) -> Decimal:
    """Convert ISO minor units to Xendit's major-unit number.

    Raises:
        AmountNotRepresentable: For a currency Xendit e-wallets do not take, or a fraction
            Xendit cannot express.
    """
    code = currency.upper()
    if code not in XENDIT_DECIMALS:
        raise AmountNotRepresentable(f"Xendit e-wallets do not take {code}")
    drop = currency_exponent(code) - XENDIT_DECIMALS[code]
    if drop > 0 and amount % 10**drop:
        raise AmountNotRepresentable(f"{code} amounts must be whole units at Xendit")
    return minor_to_decimal(amount, currency_exponent(code)).quantize(Decimal(1).scaleb(-XENDIT_DECIMALS[code]))


def from_xendit_amount(value: Decimal | int | str, currency: str) -> int:
    """Convert Xendit's major-unit number back to ISO minor units (exact)."""
    return decimal_to_minor(value, currency_exponent(currency.upper()))


def encode_body(body: dict[str, Any]) -> bytes:
    """JSON with ``Decimal`` amounts written as numbers, as Xendit expects."""
    return _number_encoder.encode(body)


class Charge(msgspec.Struct, kw_only=True):
    """The e-wallet charge object (create, get and callback ``data``)."""

    id: str
    reference_id: str = ""
    status: str = ""
    currency: str = ""
    charge_amount: Decimal = Decimal(0)
    capture_amount: Decimal | None = None
    refunded_amount: Decimal | None = None
    channel_code: str = ""
    checkout_method: str = ""
    actions: dict[str, str | None] | None = None
    is_redirect_required: bool = False
    failure_code: str | None = None
    metadata: dict[str, Any] | None = None
    created: str = ""
    updated: str = ""


class Refund(msgspec.Struct, kw_only=True):
    """An e-wallet refund object."""

    id: str
    charge_id: str = ""
    status: str = ""
    currency: str = ""
    refund_amount: Decimal = Decimal(0)
    failure_code: str | None = None


class Callback(msgspec.Struct, kw_only=True):
    """A callback envelope: ``{"event": "ewallet.capture", "data": {...}}``."""

    event: str
    data: Charge
    business_id: str = ""
    created: str = ""


class ApiError(msgspec.Struct, kw_only=True):
    """Xendit's error body."""

    error_code: str = ""
    message: str = ""


charge_decoder = msgspec.json.Decoder(Charge, float_hook=Decimal)
refund_decoder = msgspec.json.Decoder(Refund, float_hook=Decimal)
callback_decoder = msgspec.json.Decoder(Callback, float_hook=Decimal)
error_decoder = msgspec.json.Decoder(ApiError)

# The charge status words. PENDING with a checkout URL is the switch's requires_action (the
# adapter decides that from ``is_redirect_required``). REFUNDED is a charge that was paid and
# later refunded (the refund is tracked on its own); VOIDED is a charge cancelled before
# settlement, so no money reached the merchant.
STATUS_MAP: dict[str, Outcome] = {
    "SUCCEEDED": Outcome.APPROVED,
    "PENDING": Outcome.PENDING,
    "FAILED": Outcome.DECLINED_HARD,  # refined by the failure code below
    "VOIDED": Outcome.DECLINED_HARD,
    "REFUNDED": Outcome.APPROVED,
}

REFUND_STATUS_MAP: dict[str, Outcome] = {
    "SUCCEEDED": Outcome.APPROVED,
    "PENDING": Outcome.PENDING,
    "FAILED": Outcome.DECLINED_HARD,
}

# Every failure / error code Xendit documents for e-wallet charges, per the cascade rules
# (reference 4.8): the customer refused, or the account cannot pay -> hard; a condition that may
# clear (balance, limit, customer not reached) -> soft, never cascaded; a channel or partner or
# merchant-configuration problem that another provider would not have -> technical.
FAILURE_MAP: dict[str, Outcome] = {
    "ACCOUNT_ACCESS_BLOCKED": Outcome.DECLINED_HARD,
    "INVALID_ACCOUNT_DETAILS": Outcome.DECLINED_HARD,
    "ACCOUNT_NOT_ACTIVATED": Outcome.DECLINED_HARD,
    "USER_DECLINED_PAYMENT": Outcome.DECLINED_HARD,
    "USER_CANCELLED": Outcome.DECLINED_HARD,
    "INVALID_TOKEN": Outcome.DECLINED_HARD,
    "PAYMENT_EXPIRED": Outcome.DECLINED_HARD,
    "INSUFFICIENT_BALANCE": Outcome.DECLINED_SOFT,
    "MAXIMUM_LIMIT_REACHED": Outcome.DECLINED_SOFT,
    "USER_UNREACHABLE": Outcome.DECLINED_SOFT,
    "CHANNEL_UNAVAILABLE": Outcome.TECHNICAL,
    "CHANNEL_NOT_ACTIVATED": Outcome.TECHNICAL,
    "INVALID_MERCHANT_CREDENTIALS": Outcome.TECHNICAL,
    "UNSUPPORTED_CURRENCY": Outcome.TECHNICAL,
    "API_VALIDATION_ERROR": Outcome.TECHNICAL,
    "INVALID_API_KEY": Outcome.TECHNICAL,
    "SERVER_ERROR": Outcome.TECHNICAL,
    "PARTNER_TIMEOUT_ERROR": Outcome.TECHNICAL,
    "TIMEOUT_ERROR": Outcome.TECHNICAL,
}


def classify_failure(code: str | None) -> Outcome:
    """Outcome of a failed charge; an unknown code is hard (never cascade what we do not know)."""
    return FAILURE_MAP.get(code or "", Outcome.DECLINED_HARD)
