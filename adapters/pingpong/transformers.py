"""PingPong Checkout API v4 wire conventions, signing, and the one result-code and status map.

Every request, response and asynchronous notification is a flat JSON envelope::

    {"accId", "clientId", "signType": "SHA256", "version": "1.0", "bizContent": "<JSON text>", "sign"}

``sign`` is the upper-case hex SHA-256 of ``salt + "k1=v1&k2=v2..."`` over every other top-level
field, keys in ascending ASCII order, blank values left out (PingPong's "Signature Protocol",
v4). Amounts inside ``bizContent`` are decimal strings in major units of the currency
(``"12.50"``, ``"500"`` for JPY), converted here with integer arithmetic.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from adapters.base import Outcome, currency_exponent, decimal_to_minor, minor_to_decimal, sorted_pairs

SIGN_TYPE = "SHA256"
API_VERSION = "1.0"
ACK_BODY = "OK"  # PingPong retries a notification until the receiver answers exactly this


def to_pingpong_amount(amount: int, currency: str) -> str:
    """ISO minor units to PingPong's decimal string (``1250`` EUR -> ``"12.50"``)."""
    return str(minor_to_decimal(amount, currency_exponent(currency)))


def from_pingpong_amount(value: str, currency: str) -> int:
    """PingPong's decimal string back to ISO minor units, refusing extra precision."""
    return decimal_to_minor(value, currency_exponent(currency))


def sign(salt: str, envelope: dict[str, Any]) -> str:
    """Return the v4 ``sign`` of an envelope (the ``sign`` field itself is never signed)."""
    content = salt + sorted_pairs(envelope, exclude=frozenset({"sign"}))
    return hashlib.sha256(content.encode()).hexdigest().upper()


def biz_content(fields: dict[str, Any]) -> str:
    """Serialize ``bizContent`` as compact JSON with sorted keys (it is signed as text)."""
    return msgspec.json.encode(fields, order="sorted").decode()


class Envelope(msgspec.Struct, kw_only=True):
    """The signed outer object of requests, responses and notifications."""

    accId: str = ""
    clientId: str = ""
    signType: str = ""
    sign: str = ""
    version: str | None = None
    bizContent: str | None = None
    code: str | None = None
    description: str | None = None


class Transaction(msgspec.Struct, kw_only=True):
    """``bizContent`` of a payment (order answer, query answer, notification)."""

    merchantTransactionId: str = ""
    transactionId: str = ""
    status: str = ""
    amount: str | None = None
    currency: str = ""
    paymentUrl: str | None = None
    code: str | None = None
    description: str | None = None
    requestId: str | None = None
    notifyType: str | None = None
    remark: str | None = None
    refundId: str | None = None


envelope_decoder = msgspec.json.Decoder(Envelope)
transaction_decoder = msgspec.json.Decoder(Transaction)

# Transaction status ("The semantic of transaction status", v4). FAILED is not final in the
# hosted cashier (the shopper may try another card) and is classified by its result code.
STATUS_MAP: dict[str, Outcome] = {
    "SUCCESS": Outcome.APPROVED,
    "AUTH_SUCCESS": Outcome.APPROVED,
    "INIT": Outcome.PENDING,
    "PROCESSING": Outcome.PENDING,
    "FAILED": Outcome.DECLINED_HARD,
    "CLOSED": Outcome.DECLINED_HARD,  # expired or cancelled in the cashier
    "CANCEL": Outcome.DECLINED_HARD,  # an authorization voided
}

H, S, T = Outcome.DECLINED_HARD, Outcome.DECLINED_SOFT, Outcome.TECHNICAL

# Every documented result code ("Status code" appendix), per the cascade rules (reference 4.8):
# lost/stolen/fraud/risk, card data and "do not honour" -> hard; limits and frequency -> soft
# (never cascaded, retry later); authenticate-and-retry -> soft; merchant configuration,
# scheme/currency/country not supported by PingPong, and PingPong or upstream errors -> technical.
RESULT_CODE_MAP: dict[str, Outcome] = {
    "000000": Outcome.APPROVED,
    "001000": Outcome.PENDING,  # request accepted (an order created, a refund submitted)
    "002000": Outcome.PENDING,  # transaction processing
    "101000": T,  # merchant disabled
    "101001": T,  # merchant configuration error
    "101002": T,  # 3DS configuration error
    "102000": T,  # invalid or missing parameter
    "103000": T,  # invalid authentication
    "104000": T,  # invalid signature
    "105000": H,  # invalid or expired transaction
    "106000": T,  # currency not supported
    "106001": T,  # card scheme not supported
    "106002": T,  # country not supported
    "106003": T,  # language not supported
    "107000": H,  # duplicated transaction: never repeat it elsewhere
    "107001": T,  # transaction does not exist
    "107002": T,  # original transaction does not exist
    "107003": T,  # original transaction type mismatch
    "108000": H,  # refund exceeds the original transaction
    "108001": H,  # refund out of the allowed window
    "108002": H,  # already charged back
    "108003": H,  # refund exceeds the refundable balance
    "109000": H,  # capture of a reversed transaction
    "109001": H,  # capture exceeds the original
    "109002": H,  # reverse of a captured transaction
    "200000": H,  # high risk
    "201000": H,  # suspected fraud
    "202000": H,  # expired card
    "202001": H,  # stolen or lost card
    "203000": T,  # risk system error
    "300000": H,  # invalid card
    "300001": H,  # invalid CVV
    "300002": H,  # wrong expiry date
    "300003": H,  # account holder not valid
    "301001": T,  # format error (our message)
    "301002": H,  # do not honour
    "301003": S,  # limit exceeded
    "301004": S,  # too many invalid tries (Visa 75, category 2)
    "301005": S,  # frequency exceeded (Visa 65, category 2)
    "301006": T,  # merchant limit exceeded (acquirer side: another provider may take it)
    "301007": H,  # restricted card
    "301008": H,  # expired card
    "301009": H,  # lost card
    "301010": H,  # incorrect PIN
    "301011": H,  # cardholder verification failed
    "301012": T,  # invalid amount (our message)
    "301013": H,  # duplicate transaction
    "301015": S,  # retry with authentication (1A): re-run with 3DS, not another provider
    "301099": H,  # declined, other reason
    "302000": H,  # high-risk transaction
    "303000": H,  # refund refused
    "400000": H,  # 3DS authentication failed
    "400001": H,  # card not enrolled in 3-D Secure
    "500000": T,
    "500001": T,
    "500002": T,
    "500003": T,
    "500004": T,
    "500005": T,
    "500006": T,
    "500008": T,  # no available sub-channel
    "500009": T,  # no available merchant id
    "600000": T,  # external system error
    "600001": T,  # external gateway error
    "600002": T,  # external gateway timeout
}


def classify_code(code: str | None) -> Outcome:
    """Outcome of a result code; an unknown code is hard (never cascade what we do not know)."""
    return RESULT_CODE_MAP.get(code or "", Outcome.DECLINED_HARD)


# "Transaction does not exist", answered by the query for an order PingPong does not know.
NOT_FOUND_CODE = "107001"

# Result codes that, answered on the envelope with no transaction, do not prove that nothing was
# processed: PingPong's own or an upstream system failed or timed out while handling the request
# (a refund may have reached the acquirer). On a FAILED transaction the same codes are final.
AMBIGUOUS_ENVELOPE_CODES = frozenset(
    {"203000", "500000", "500001", "500002", "500003", "500004", "500005", "500006", "600000", "600001", "600002"}
)


def classify_envelope_code(code: str | None) -> Outcome:
    """Outcome of an error answered on the envelope (no transaction): system failures are unknown."""
    if code in AMBIGUOUS_ENVELOPE_CODES:
        return Outcome.UNKNOWN
    return classify_code(code)
