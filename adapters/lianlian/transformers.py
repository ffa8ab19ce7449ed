"""LianLian Global acquiring (checkout sessions) wire conventions, signing, status and decline map.

LianLian is documented here from secondary sources (reference 4.4): checkout sessions at
``POST /accept_payments/checkout/sessions``, an ``LLPAY-Signature`` header on requests, answers and
notifications carrying a timestamp (``t=``) and versioned signatures, and ``Idempotency-Key``.
LianLian's production scheme signs with RSA keys; this adapter implements the documented
stand-in below, with the same inputs, until the merchant's keys and LianLian's exact canonical
form can be checked:

* the signed fields are the top-level JSON body fields (nested objects and arrays written as
  compact JSON with sorted keys, booleans as ``true``/``false``) plus ``timestamp=<t>`` and, on a
  request, ``request_path=<path and query>``;
* the content is ``k1=v1&k2=v2...``, keys in ascending ASCII order, empty values left out;
* ``LLPAY-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(signing_key, content)>``, refused when
  the timestamp is more than 5 minutes away.

Amounts are decimal strings in major units (``"12.50"``), converted here with integer arithmetic.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import msgspec

from adapters.base import (
    Outcome,
    WebhookRejected,
    currency_exponent,
    decimal_to_minor,
    minor_to_decimal,
    sorted_pairs,
)

SIGNATURE_HEADER = "LLPAY-Signature"
SIGNATURE_TOLERANCE_S = 300


def to_lianlian_amount(amount: int, currency: str) -> str:
    """ISO minor units to LianLian's decimal string (``1250`` USD -> ``"12.50"``)."""
    return str(minor_to_decimal(amount, currency_exponent(currency)))


def from_lianlian_amount(value: str, currency: str) -> int:
    """LianLian's decimal string back to ISO minor units, refusing extra precision."""
    return decimal_to_minor(value, currency_exponent(currency))


def _field(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return msgspec.json.encode(value, order="sorted").decode()
    return str(value)


def signing_content(body: dict[str, Any], timestamp: int, path: str | None = None) -> str:
    """The canonical string that is signed (see the module docstring)."""
    fields = {key: _field(value) for key, value in body.items()}
    fields["timestamp"] = str(timestamp)
    if path is not None:
        fields["request_path"] = path
    return sorted_pairs(fields)


def signature_header(key: str, body: dict[str, Any], path: str | None = None, timestamp: int | None = None) -> str:
    """Return the ``LLPAY-Signature`` header value for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(key.encode(), signing_content(body, ts, path).encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def verify_signature(
    key: str, body: dict[str, Any], header: str, path: str | None = None, tolerance: int = SIGNATURE_TOLERANCE_S
) -> None:
    """Check an ``LLPAY-Signature`` header against ``body``.

    Raises:
        WebhookRejected: ``bad_signature`` (missing, malformed, wrong) or ``stale``.
    """
    parts = dict(p.strip().split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
        received = parts["v1"]
    except (KeyError, ValueError):
        raise WebhookRejected("bad_signature") from None
    if not key:
        raise WebhookRejected("bad_signature")
    expected = hmac.new(key.encode(), signing_content(body, ts, path).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, received):
        raise WebhookRejected("bad_signature")
    if abs(time.time() - ts) > tolerance:
        raise WebhookRejected("stale")


class Payment(msgspec.Struct, kw_only=True):
    """A checkout session / payment (create answer, query answer, notification)."""

    merchant_transaction_id: str
    ll_transaction_id: str = ""
    payment_status: str = ""
    order_amount: str | None = None
    order_currency: str = ""
    checkout_url: str | None = None
    session_id: str | None = None
    failure_code: str | None = None
    failure_reason: str | None = None
    notification_id: str | None = None
    notification_type: str | None = None
    metadata: dict[str, str] | None = None


class Refund(msgspec.Struct, kw_only=True):
    """A refund answer."""

    merchant_refund_id: str
    ll_refund_id: str = ""
    refund_status: str = ""
    refund_amount: str | None = None
    refund_currency: str = ""
    failure_code: str | None = None


class ApiError(msgspec.Struct, kw_only=True):
    """LianLian's error body."""

    code: str = ""
    message: str = ""


payment_decoder = msgspec.json.Decoder(Payment)
refund_decoder = msgspec.json.Decoder(Refund)
error_decoder = msgspec.json.Decoder(ApiError)

# Payment status words. WP with a checkout URL is the switch's requires_action (the adapter
# decides); PF is classified by its failure code.
STATUS_MAP: dict[str, Outcome] = {
    "WP": Outcome.PENDING,  # waiting for the payer
    "PP": Outcome.PENDING,  # payment processing
    "PS": Outcome.APPROVED,  # payment success
    "PF": Outcome.DECLINED_HARD,  # payment failed
    "CA": Outcome.DECLINED_HARD,  # session cancelled or expired
}

REFUND_STATUS_MAP: dict[str, Outcome] = {
    "RP": Outcome.PENDING,
    "RS": Outcome.APPROVED,
    "RF": Outcome.DECLINED_HARD,
}

H, S, T = Outcome.DECLINED_HARD, Outcome.DECLINED_SOFT, Outcome.TECHNICAL

# A failed card payment carries the issuer's ISO 8583 response code, classified by the Visa
# decline categories of reference 4.8: category 1 ("never approve") and 3 ("fix the data") hard;
# category 2 ("not now") soft, including 1A/65 (authenticate and retry on the same flow);
# issuer or switch unavailable (91, 96) technical, the only cascade-safe ones.
FAILURE_MAP: dict[str, Outcome] = {
    **dict.fromkeys(("03", "04", "05", "07", "12", "15", "41", "43", "46", "57", "62", "78", "93"), H),
    **dict.fromkeys(("R0", "R1", "R3"), H),
    **dict.fromkeys(("14", "54", "55", "82", "N7"), H),
    **dict.fromkeys(("19", "51", "59", "61", "65", "75", "86", "N3", "N4", "1A"), S),
    **dict.fromkeys(("91", "96"), T),
}


def classify_failure(code: str | None) -> Outcome:
    """Outcome of a failed payment; an unknown code is hard (never cascade what we do not know)."""
    return FAILURE_MAP.get(code or "", Outcome.DECLINED_HARD)
