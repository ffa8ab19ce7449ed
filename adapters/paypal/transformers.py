"""PayPal Orders v2 / Payments v2 wire conventions, status maps and processor-response map.

PayPal amounts are decimal strings (``"12.50"``). HUF, JPY and TWD take no decimals at PayPal
even though HUF and TWD have two ISO minor digits, so those amounts must be whole units.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from adapters.base import Outcome, currency_exponent

# Currencies PayPal expresses without decimals.
NO_DECIMALS = frozenset({"HUF", "JPY", "TWD"})


class AmountNotRepresentable(ValueError):
    """The amount cannot be expressed in PayPal's convention for the currency without rounding."""


def paypal_decimals(currency: str) -> int:
    """Return how many decimals PayPal expects for ``currency``."""
    code = currency.upper()
    return 0 if code in NO_DECIMALS else currency_exponent(code)


def to_paypal_value(amount: int, currency: str) -> str:
    """Format ISO minor units as PayPal's decimal string, with integer arithmetic only.

    Raises:
        AmountNotRepresentable: For HUF/TWD amounts with a fractional part.
    """
    code = currency.upper()
    iso = currency_exponent(code)
    decimals = paypal_decimals(code)
    drop = iso - decimals
    if drop > 0:
        if amount % 10**drop:
            raise AmountNotRepresentable(f"{code} amounts must be whole units at PayPal")
        amount //= 10**drop
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}" if decimals else f"{sign}{whole}"


def from_paypal_value(value: str, currency: str) -> int:
    """Parse PayPal's decimal string into ISO minor units.

    Raises:
        ValueError: When the string is not a number or has more precision than the currency.
    """
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    scaled = number.scaleb(currency_exponent(currency.upper()))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} has more decimals than {currency}")
    return int(scaled)


def money(amount: int, currency: str) -> dict[str, str]:
    """PayPal's ``money`` object."""
    return {"currency_code": currency.upper(), "value": to_paypal_value(amount, currency)}


ORDER_STATUS_MAP: dict[str, Outcome] = {
    "CREATED": Outcome.PENDING,
    "SAVED": Outcome.PENDING,
    "APPROVED": Outcome.PENDING,
    "PAYER_ACTION_REQUIRED": Outcome.REQUIRES_ACTION,
    "VOIDED": Outcome.DECLINED_HARD,
    # COMPLETED alone does not mean paid: the authorization or capture status decides.
    "COMPLETED": Outcome.UNKNOWN,
}

AUTHORIZATION_STATUS_MAP: dict[str, Outcome] = {
    "CREATED": Outcome.APPROVED,
    "CAPTURED": Outcome.APPROVED,
    "PARTIALLY_CAPTURED": Outcome.APPROVED,
    "PENDING": Outcome.PENDING,
    "DENIED": Outcome.DECLINED_HARD,
    "VOIDED": Outcome.APPROVED,  # the answer to our own void
    "EXPIRED": Outcome.DECLINED_HARD,
}

CAPTURE_STATUS_MAP: dict[str, Outcome] = {
    "COMPLETED": Outcome.APPROVED,
    "PARTIALLY_REFUNDED": Outcome.APPROVED,
    "REFUNDED": Outcome.APPROVED,
    "PENDING": Outcome.PENDING,
    "DECLINED": Outcome.DECLINED_HARD,
    "FAILED": Outcome.TECHNICAL,
}

REFUND_STATUS_MAP: dict[str, Outcome] = {
    "COMPLETED": Outcome.APPROVED,
    "PENDING": Outcome.PENDING,
    "CANCELLED": Outcome.DECLINED_HARD,
    "FAILED": Outcome.DECLINED_HARD,
}

_H, _S, _T = Outcome.DECLINED_HARD, Outcome.DECLINED_SOFT, Outcome.TECHNICAL

# processor_response.response_code -> Outcome (the codes are the enum in Payments v2).
# Soft: the issuer cannot approve now; technical: processor or issuer unavailable (cascade-safe);
# hard: everything the issuer will never approve or the customer must correct.
PROCESSOR_RESPONSE_MAP: dict[str, Outcome] = {
    "0000": Outcome.APPROVED,  # APPROVED
    "00N7": _H,  # CVV2_FAILURE_POSSIBLE_RETRY_WITH_CVV
    "0100": _S,  # REFERRAL
    "0390": _H,  # ACCOUNT_NOT_FOUND
    "0500": _S,  # DO_NOT_HONOR
    "0580": _H,  # UNAUTHORIZED_TRANSACTION
    # BAD_RESPONSE_REVERSAL_REQUIRED: the issuer may hold the funds until PayPal reverses; a
    # cascade now could put a second hold on the card, so it does not cascade.
    "0800": _H,
    "0880": _T,  # CRYPTOGRAPHIC_FAILURE
    "0890": _H,  # UNACCEPTABLE_PIN
    "0960": _T,  # SYSTEM_MALFUNCTION
    "0R00": _H,  # CANCELLED_PAYMENT
    "1000": Outcome.APPROVED,  # PARTIAL_AUTHORIZATION
    "10BR": _H,  # ISSUER_REJECTED
    "1300": _T,  # INVALID_DATA_FORMAT
    "1310": _H,  # INVALID_AMOUNT
    "1312": _H,  # INVALID_TRANSACTION_CARD_ISSUER_ACQUIRER
    "1317": _H,  # INVALID_CAPTURE_DATE
    "1320": _T,  # INVALID_CURRENCY_CODE (acquirer side)
    "1330": _H,  # INVALID_ACCOUNT
    "1335": _H,  # INVALID_ACCOUNT_RECURRING
    "1340": _T,  # INVALID_TERMINAL
    "1350": _T,  # INVALID_MERCHANT
    "1352": _H,  # RESTRICTED_OR_INACTIVE_ACCOUNT
    "1360": _T,  # BAD_PROCESSING_CODE
    "1370": _T,  # INVALID_MCC
    "1380": _H,  # INVALID_EXPIRATION
    "1382": _H,  # INVALID_CARD_VERIFICATION_VALUE
    "1384": _H,  # INVALID_LIFE_CYCLE_OF_TRANSACTION
    "1390": _H,  # INVALID_ORDER
    "1393": _H,  # TRANSACTION_CANNOT_BE_COMPLETED
    "5100": _H,  # GENERIC_DECLINE
    "5110": _H,  # CVV2_FAILURE
    "5120": _S,  # INSUFFICIENT_FUNDS
    "5130": _H,  # INVALID_PIN
    "5135": _H,  # DECLINED_PIN_TRY_EXCEEDED
    "5140": _H,  # CARD_CLOSED
    "5150": _H,  # PICKUP_CARD_SPECIAL_CONDITIONS
    "5160": _H,  # UNAUTHORIZED_USER
    "5170": _H,  # AVS_FAILURE
    "5180": _H,  # INVALID_OR_RESTRICTED_CARD
    "5190": _H,  # SOFT_AVS
    "5200": _H,  # DUPLICATE_TRANSACTION
    "5210": _H,  # INVALID_TRANSACTION
    "5400": _H,  # EXPIRED_CARD
    "5500": _H,  # INCORRECT_PIN_REENTER
    "5650": _S,  # DECLINED_SCA_REQUIRED: re-run with 3DS on the same provider
    "5700": _H,  # TRANSACTION_NOT_PERMITTED
    "5710": _S,  # TX_ATTEMPTS_EXCEED_LIMIT
    "5800": _H,  # REVERSAL_REJECTED
    "5900": _H,  # INVALID_ISSUE
    "5910": _T,  # ISSUER_NOT_AVAILABLE_NOT_RETRIABLE (this route; another acquirer may reach it)
    "5920": _T,  # ISSUER_NOT_AVAILABLE_RETRIABLE
    "5930": _H,  # CARD_NOT_ACTIVATED
    "5950": _H,  # DECLINED_DUE_TO_UPDATED_ACCOUNT
    "6300": _H,  # ACCOUNT_NOT_ON_FILE
    "7600": Outcome.APPROVED,  # APPROVED_NON_CAPTURE
    "7700": _T,  # ERROR_3DS
    "7710": _H,  # AUTHENTICATION_FAILED
    "7800": _T,  # BIN_ERROR
    "7900": _T,  # PIN_ERROR
    "8000": _T,  # PROCESSOR_SYSTEM_ERROR
    "8010": _T,  # HOST_KEY_ERROR
    "8020": _T,  # CONFIGURATION_ERROR
    "8030": _T,  # UNSUPPORTED_OPERATION
    "8100": _T,  # FATAL_COMMUNICATION_ERROR
    "8110": _T,  # RETRIABLE_COMMUNICATION_ERROR
    "8220": _T,  # SYSTEM_UNAVAILABLE
    "9100": _S,  # DECLINED_PLEASE_RETRY
    "9500": _H,  # SUSPECTED_FRAUD
    "9510": _H,  # SECURITY_VIOLATION
    "9520": _H,  # LOST_OR_STOLEN
    "9530": _S,  # HOLD_CALL_CENTER
    "9540": _H,  # REFUSED_CARD
    "9600": _H,  # UNRECOGNIZED_RESPONSE_CODE: an issuer answer nobody can read never cascades
}
# PP-prefixed codes are PayPal's own risk and compliance refusals (billing address, velocity,
# blocked country, fraud model...): PayPal will keep refusing, so none of them cascades.
PP_CODES = (
    "PCNR",
    "PCVV",
    "PP06",
    "PPRN",
    "PPAD",
    "PPAB",
    "PPAE",
    "PPAG",
    "PPAI",
    "PPAR",
    "PPAU",
    "PPAV",
    "PPAX",
    "PPBG",
    "PPC2",
    "PPCE",
    "PPCO",
    "PPCR",
    "PPCT",
    "PPCU",
    "PPD3",
    "PPDC",
    "PPDI",
    "PPDV",
    "PPDT",
    "PPEF",
    "PPEL",
    "PPER",
    "PPEX",
    "PPFE",
    "PPFI",
    "PPFR",
    "PPFV",
    "PPGR",
    "PPH1",
    "PPIF",
    "PPII",
    "PPIM",
    "PPIT",
    "PPLR",
    "PPLS",
    "PPMB",
    "PPMC",
    "PPMD",
    "PPNC",
    "PPNL",
    "PPNM",
    "PPNT",
    "PPPH",
    "PPPI",
    "PPPM",
    "PPQC",
    "PPRE",
    "PPRF",
    "PPRR",
    "PPS0",
    "PPS1",
    "PPS2",
    "PPS3",
    "PPS4",
    "PPS5",
    "PPS6",
    "PPSC",
    "PPSD",
    "PPSE",
    "PPTE",
    "PPTF",
    "PPTI",
    "PPTR",
    "PPTT",
    "PPTV",
    "PPUA",
    "PPUC",
    "PPUE",
    "PPUI",
    "PPUP",
    "PPUR",
    "PPVC",
    "PPVE",
    "PPVT",
)
PROCESSOR_RESPONSE_MAP.update(dict.fromkeys(PP_CODES, _H))
# Temporary PayPal-side limits among the PP codes.
PROCESSOR_RESPONSE_MAP.update({"PPTT": _S, "PPRR": _S, "PPTE": _T})

# Issues in 422 error bodies (``details[].issue``) -> Outcome.
ISSUE_MAP: dict[str, Outcome] = {
    "INSTRUMENT_DECLINED": _H,
    "TRANSACTION_REFUSED": _H,
    "CARD_EXPIRED": _H,
    "PAYER_ACTION_REQUIRED": Outcome.REQUIRES_ACTION,
    "PAYER_CANNOT_PAY": _H,
    "DUPLICATE_INVOICE_ID": _H,
    "AUTHORIZATION_ALREADY_CAPTURED": _H,
    "AUTHORIZATION_VOIDED": _H,
    "AUTHORIZATION_EXPIRED": _H,
    "MAX_CAPTURE_AMOUNT_EXCEEDED": _H,
    "CAPTURE_FULLY_REFUNDED": _H,
    "REFUND_AMOUNT_EXCEEDED": _H,
    "ORDER_NOT_APPROVED": _H,
    # The order was already processed (a card order processes on create): never a refusal, the
    # adapter reads the order to learn what happened.
    "ORDER_ALREADY_CAPTURED": Outcome.UNKNOWN,
    "ORDER_ALREADY_AUTHORIZED": Outcome.UNKNOWN,
    "ORDER_ALREADY_COMPLETED": Outcome.UNKNOWN,
    # 409 RESOURCE_CONFLICT: an earlier request on this resource is still being processed.
    "PREVIOUS_REQUEST_IN_PROGRESS": Outcome.UNKNOWN,
    # PayPal failed while processing: it may have acted.
    "INTERNAL_SERVER_ERROR": Outcome.UNKNOWN,
    "INTERNAL_SERVICE_ERROR": Outcome.UNKNOWN,
}

EVENT_MAP: dict[str, Outcome] = {
    "PAYMENT.AUTHORIZATION.CREATED": Outcome.APPROVED,
    "PAYMENT.AUTHORIZATION.VOIDED": Outcome.APPROVED,
    "PAYMENT.CAPTURE.COMPLETED": Outcome.APPROVED,
    "PAYMENT.CAPTURE.PENDING": Outcome.PENDING,
    "PAYMENT.CAPTURE.DENIED": Outcome.DECLINED_HARD,
    "PAYMENT.CAPTURE.DECLINED": Outcome.DECLINED_HARD,
    "PAYMENT.CAPTURE.REFUNDED": Outcome.APPROVED,
    "CHECKOUT.ORDER.APPROVED": Outcome.PENDING,
    "CHECKOUT.ORDER.COMPLETED": Outcome.APPROVED,
}
