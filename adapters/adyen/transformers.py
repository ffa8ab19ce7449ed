"""Adyen Checkout v71 wire types, the resultCode map and the refusalReasonCode map.

Adyen amounts are ``{"currency", "value"}`` with ``value`` in Adyen's own minor units: ISO 4217's
for every currency except four, where Adyen's decimals differ from the standard
(docs.adyen.com/development-resources/currency-codes): CLP and ISK take two decimals at Adyen
(ISO: none), IDR and CVE none (ISO: two). Every amount sent and received goes through
:func:`to_adyen_value` / :func:`from_adyen_value`, which refuse to round.
"""

from __future__ import annotations

from typing import Any

import msgspec

from adapters.base import Outcome, currency_exponent

API_VERSION = "v71"

# Adyen's decimals where they differ from ISO 4217; every other code uses the ISO exponent.
ADYEN_EXPONENTS: dict[str, int] = {"CLP": 2, "CVE": 0, "IDR": 0, "ISK": 2}


class AmountNotRepresentable(ValueError):
    """The amount cannot be expressed in Adyen's minor units without rounding."""


def adyen_exponent(currency: str) -> int:
    """Return how many decimals Adyen's ``value`` carries for ``currency``.

    Raises:
        ValueError: For an unknown currency code.
    """
    code = currency.upper()
    iso = currency_exponent(code)  # rejects unknown codes before they reach Adyen
    return ADYEN_EXPONENTS.get(code, iso)


def to_adyen_value(amount: int, currency: str) -> int:
    """Convert ISO minor units to Adyen's minor units (IDR 1000000 -> 10000, CLP 5000 -> 500000).

    Raises:
        AmountNotRepresentable: When Adyen would need a rounded amount (IDR 100.50).
    """
    shift = adyen_exponent(currency) - currency_exponent(currency.upper())
    if shift >= 0:
        return amount * 10**shift
    scale = 10**-shift
    if amount % scale:
        raise AmountNotRepresentable(f"{currency.upper()} amounts must be whole units at Adyen")
    return amount // scale


def from_adyen_value(value: int, currency: str) -> int:
    """Convert Adyen's minor units back to ISO minor units, refusing to round.

    Raises:
        AmountNotRepresentable: When Adyen's value has more precision than ISO allows (CLP 12.50).
    """
    shift = adyen_exponent(currency) - currency_exponent(currency.upper())
    if isinstance(value, bool) or not isinstance(value, int):
        raise AmountNotRepresentable("Adyen amount value is not an integer")
    if shift <= 0:
        return value * 10**-shift
    scale = 10**shift
    if value % scale:
        raise AmountNotRepresentable(f"{currency.upper()} value {value} has decimals ISO 4217 does not")
    return value // scale


def to_adyen_amount(amount: int, currency: str) -> dict[str, Any]:
    """Return Adyen's ``Amount`` object for ISO minor units.

    Raises:
        AmountNotRepresentable: When the amount cannot be sent without rounding.
        ValueError: For an unknown currency code.
    """
    return {"currency": currency.upper(), "value": to_adyen_value(amount, currency)}


def from_adyen_amount(amount: dict[str, Any] | None) -> int | None:
    """Read an Adyen ``Amount`` object back into ISO minor units (None when absent).

    Raises:
        ValueError: When the object is malformed or not representable in ISO minor units.
    """
    if not amount:
        return None
    try:
        return from_adyen_value(amount["value"], str(amount["currency"]))
    except (KeyError, TypeError):
        raise AmountNotRepresentable("malformed Adyen amount") from None


# resultCode -> Outcome. ``Refused`` is refined by the refusal code below. ``Error`` is technical
# because Adyen reports it as a final result in which the payment was not authorised (the
# refusalReason says why), so nothing is held on the card; ``Cancelled`` likewise holds nothing.
RESULT_CODE_MAP: dict[str, Outcome] = {
    "Authorised": Outcome.APPROVED,
    "PartiallyAuthorised": Outcome.APPROVED,
    "Refused": Outcome.DECLINED_HARD,
    "Error": Outcome.TECHNICAL,
    "Cancelled": Outcome.DECLINED_HARD,
    "Pending": Outcome.PENDING,
    "Received": Outcome.PENDING,
    "RedirectShopper": Outcome.REQUIRES_ACTION,
    "IdentifyShopper": Outcome.REQUIRES_ACTION,
    "ChallengeShopper": Outcome.REQUIRES_ACTION,
    "PresentToShopper": Outcome.REQUIRES_ACTION,
    "AuthenticationFinished": Outcome.PENDING,
    "AuthenticationNotRequired": Outcome.PENDING,
}

# refusalReasonCode -> (refusalReason, Outcome), following the cascade rules (reference 4.8).
REFUSAL_MAP: dict[str, tuple[str, Outcome]] = {
    # Kept with the design's sandbox: a generic refusal does not cascade or retry.
    "2": ("Refused", Outcome.DECLINED_HARD),
    "3": ("Referral", Outcome.DECLINED_SOFT),
    "4": ("Acquirer Error", Outcome.TECHNICAL),
    "5": ("Blocked Card", Outcome.DECLINED_HARD),
    "6": ("Expired Card", Outcome.DECLINED_HARD),
    "7": ("Invalid Amount", Outcome.DECLINED_HARD),
    "8": ("Invalid Card Number", Outcome.DECLINED_HARD),
    "9": ("Issuer Unavailable", Outcome.TECHNICAL),
    # This acquirer does not support the card or method; the issuer never saw it.
    "10": ("Not supported", Outcome.TECHNICAL),
    "11": ("3D Not Authenticated", Outcome.DECLINED_HARD),
    "12": ("Not enough balance", Outcome.DECLINED_SOFT),
    "14": ("Acquirer Fraud", Outcome.DECLINED_HARD),
    "15": ("Cancelled", Outcome.DECLINED_HARD),
    "16": ("Shopper Cancelled", Outcome.DECLINED_HARD),
    "17": ("Invalid Pin", Outcome.DECLINED_HARD),
    "18": ("Pin tries exceeded", Outcome.DECLINED_HARD),
    "19": ("Pin validation not possible", Outcome.TECHNICAL),
    "20": ("FRAUD", Outcome.DECLINED_HARD),
    "21": ("Not Submitted", Outcome.TECHNICAL),
    "22": ("FRAUD-CANCELLED", Outcome.DECLINED_HARD),
    "23": ("Transaction Not Permitted", Outcome.DECLINED_HARD),
    "24": ("CVC Declined", Outcome.DECLINED_HARD),
    "25": ("Restricted Card", Outcome.DECLINED_HARD),
    "26": ("Revocation Of Auth", Outcome.DECLINED_HARD),
    "27": ("Declined Non Generic", Outcome.DECLINED_HARD),
    "28": ("Withdrawal amount exceeded", Outcome.DECLINED_SOFT),
    "29": ("Withdrawal count exceeded", Outcome.DECLINED_SOFT),
    "31": ("Issuer Suspected Fraud", Outcome.DECLINED_HARD),
    "32": ("AVS Declined", Outcome.DECLINED_HARD),
    "33": ("Card requires online pin", Outcome.DECLINED_SOFT),
    "34": ("No checking account available", Outcome.DECLINED_HARD),
    "35": ("No savings account", Outcome.DECLINED_HARD),
    "36": ("Mobile pin required", Outcome.DECLINED_SOFT),
    "37": ("Contactless fallback", Outcome.DECLINED_SOFT),
    # Re-run with 3DS on the same provider, never cascade.
    "38": ("Authentication required", Outcome.DECLINED_SOFT),
    "39": ("RReq not received", Outcome.TECHNICAL),
    "40": ("Current AID in penalty box", Outcome.DECLINED_SOFT),
    "41": ("CVM required", Outcome.DECLINED_SOFT),
    "42": ("Transaction timeout", Outcome.TECHNICAL),
}


def classify_refusal(result_code: str, refusal_code: str | None) -> Outcome:
    """Map a resultCode plus refusalReasonCode; an unknown refusal code is hard (no cascade)."""
    if result_code == "Refused" and refusal_code is not None:
        return REFUSAL_MAP.get(refusal_code, ("", Outcome.DECLINED_HARD))[1]
    return RESULT_CODE_MAP.get(result_code, Outcome.UNKNOWN)


# Adyen error codes that say a request with this idempotency key was already processed or is
# still in progress (704): the first request may have moved money.
IN_PROGRESS_ERROR_CODES = frozenset({"704"})

# Modification answers (captures, cancels, refunds) say only ``received``: the result arrives as
# a notification, so the call is pending until then.
MODIFICATION_STATUS_MAP: dict[str, Outcome] = {"received": Outcome.PENDING}

# Notification eventCode -> Outcome when ``success`` is "true" (a "false" is a failure).
EVENT_SUCCESS_MAP: dict[str, Outcome] = {
    "AUTHORISATION": Outcome.APPROVED,
    "CAPTURE": Outcome.APPROVED,
    "CANCELLATION": Outcome.APPROVED,
    "REFUND": Outcome.APPROVED,
    "CANCEL_OR_REFUND": Outcome.APPROVED,
    "CAPTURE_FAILED": Outcome.DECLINED_HARD,
    "REFUND_FAILED": Outcome.DECLINED_HARD,
    "REFUNDED_REVERSED": Outcome.DECLINED_HARD,
    "OFFER_CLOSED": Outcome.DECLINED_HARD,
    "PENDING": Outcome.PENDING,
}


class PaymentResponse(msgspec.Struct, kw_only=True, rename="camel"):
    """The fields of ``/payments`` answers the adapter reads."""

    result_code: str = ""
    psp_reference: str | None = None
    merchant_reference: str | None = None
    refusal_reason: str | None = None
    refusal_reason_code: str | None = None
    action: dict[str, Any] | None = None
    amount: dict[str, Any] | None = None


class ModificationResponse(msgspec.Struct, kw_only=True, rename="camel"):
    """``/captures``, ``/cancels``, ``/refunds`` answers."""

    psp_reference: str
    payment_psp_reference: str | None = None
    status: str = ""
    amount: dict[str, Any] | None = None


class ServiceError(msgspec.Struct, kw_only=True, rename="camel"):
    """Adyen's error body."""

    status: int = 0
    error_code: str | None = None
    message: str | None = None
    error_type: str | None = None


class NotificationItem(msgspec.Struct, kw_only=True, rename="camel"):
    """One ``NotificationRequestItem``."""

    event_code: str
    psp_reference: str
    success: str
    merchant_account_code: str = ""
    merchant_reference: str = ""
    original_reference: str | None = None
    amount: dict[str, Any] = msgspec.field(default_factory=dict)
    reason: str | None = None
    event_date: str | None = None
    additional_data: dict[str, str] = msgspec.field(default_factory=dict)


class NotificationWrapper(msgspec.Struct, rename={"item": "NotificationRequestItem"}):
    """``{"NotificationRequestItem": {...}}``."""

    item: NotificationItem


class Notification(msgspec.Struct, kw_only=True, rename="camel"):
    """A notification batch."""

    notification_items: list[NotificationWrapper]
    live: str = "false"
