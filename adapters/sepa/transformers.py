"""SEPA wire conventions: IBAN/BIC checks, pain.008/pain.001 XML, gateway JSON, R-transaction map.

SEPA moves euros only; ``sepaxml`` takes integer euro cents, which is exactly the switch's minor
unit for EUR, so no conversion happens (a non-EUR amount is refused). The XML is generated with
``sepaxml`` and validated against the XSD that ``sepaxml`` ships, with the schema parsed once per
process (``sepaxml``'s own ``export(validate=True)`` re-parses the XSD on every call).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import sepaxml
from sepaxml import SepaDD, SepaTransfer
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength, ValidationError

from adapters.base import Outcome

PAIN_008_VERSION = "pain.008.001.08"  # BIC optional (IBAN-only since 2016)
PAIN_001_VERSION = "pain.001.001.09"
SEQUENCE_TYPES = frozenset({"FRST", "RCUR", "OOFF", "FNAL"})


class InvalidBankDetails(ValueError):
    """An IBAN, BIC or mandate field is unusable.

    Attributes:
        code: The ISO 20022 reason code a bank would have answered (``AC01`` wrong account,
            ``RC01`` wrong BIC, ``MD02`` mandate data missing, ``RR02`` debtor name missing).
    """

    def __init__(self, code: str, message: str) -> None:
        """Build the error; ``message`` never contains the full account number."""
        super().__init__(message)
        self.code = code


class AmountNotRepresentable(ValueError):
    """SEPA cannot carry the amount (not EUR, not positive, or above the scheme maximum)."""


def _masked(value: str) -> str:
    compact = "".join(value.split()).upper()
    return f"{compact[:2]}…{compact[-4:]}" if len(compact) > 6 else "…"


def validate_iban(value: str) -> str:
    """Return the compact IBAN, or explain what is wrong with it.

    Raises:
        InvalidBankDetails: ``AC01`` with a message naming the failed check (the IBAN is masked).
    """
    try:
        return str(stdnum_iban.validate(value))
    except InvalidChecksum:
        reason = "check digits do not match (ISO 7064 mod-97)"
    except InvalidLength:
        reason = "is too short or too long"
    except InvalidFormat:
        reason = "does not match its country's IBAN format (length or characters)"
    except InvalidComponent:
        reason = "country code or national bank part is not valid"
    except ValidationError:
        reason = "is not a valid IBAN"
    raise InvalidBankDetails("AC01", f"IBAN {_masked(value)} {reason}")


def validate_bic(value: str) -> str:
    """Return the BIC upper-cased, or explain what is wrong with it.

    Raises:
        InvalidBankDetails: ``RC01`` with a message naming the failed check.
    """
    try:
        return str(stdnum_bic.validate(value))
    except InvalidLength:
        reason = "must be 8 or 11 characters"
    except InvalidFormat:
        reason = "must be 4 letters (bank), 2 letters (country), 2 characters (location), optional 3 (branch)"
    except InvalidComponent:
        reason = "has an unknown country code"
    except ValidationError:
        reason = "is not a valid BIC"
    raise InvalidBankDetails("RC01", f"BIC {value[:4]!r}… {reason}")


# The SEPA rulebooks cap one instruction at 999,999,999.99 EUR.
MAX_AMOUNT_CENTS = 99_999_999_999


def to_sepa_amount(amount: int, currency: str) -> int:
    """Return the integer euro cents ``sepaxml`` takes.

    Raises:
        AmountNotRepresentable: For another currency or an out-of-range amount.
    """
    if currency.upper() != "EUR":
        raise AmountNotRepresentable("SEPA carries EUR only")
    if not 0 < amount <= MAX_AMOUNT_CENTS:
        raise AmountNotRepresentable("SEPA amounts must be between 0.01 and 999,999,999.99 EUR")
    return amount


def message_id(idempotency_key: str) -> str:
    """A ``MsgId`` derived from the idempotency key (35 characters at most).

    Banks refuse a second file with a ``MsgId`` they have already taken; deriving it from the
    key turns that duplicate check into the idempotency of the call.
    """
    return "SW" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:30]


@functools.cache
def _schema(version: str) -> Any:
    import xmlschema  # imported late, as sepaxml does: it patches ElementTree on import

    return xmlschema.XMLSchema(str(Path(sepaxml.__file__).parent / "schemas" / f"{version}.xsd"))


def validate_xml(xml: bytes, version: str) -> None:
    """Validate a pain document against the XSD bundled with ``sepaxml``.

    Raises:
        xmlschema.XMLSchemaValidationError: When the document does not conform.
    """
    _schema(version).validate(xml.decode())


class Creditor(msgspec.Struct, frozen=True, kw_only=True):
    """The merchant's own SEPA account (from ``Credentials.extra``)."""

    name: str
    iban: str
    bic: str | None = None
    creditor_id: str = ""


def build_pain008(
    creditor: Creditor, msg_id: str, payments: Sequence[dict[str, Any]], version: str = PAIN_008_VERSION
) -> bytes:
    """Build and validate a pain.008 direct-debit initiation with ``sepaxml``.

    Args:
        creditor: The collecting account and its SEPA creditor identifier.
        msg_id: The message id (see :func:`message_id`).
        payments: ``sepaxml`` payment dicts (name, IBAN, optional BIC, amount in cents, type,
            collection_date, mandate_id, mandate_date, description, endtoend_id).
        version: The pain.008 schema version.
    """
    config: dict[str, Any] = {
        "name": creditor.name,
        "IBAN": creditor.iban,
        "batch": True,
        "creditor_id": creditor.creditor_id,
        "currency": "EUR",
    }
    if creditor.bic:
        config["BIC"] = creditor.bic
    document = _PinnedDD(config, version, msg_id)
    for payment in payments:
        document.add_payment(dict(payment))
    xml: bytes = document.export(validate=False)
    validate_xml(xml, version)
    return xml


def build_pain001(
    debtor: Creditor, msg_id: str, payments: Sequence[dict[str, Any]], version: str = PAIN_001_VERSION
) -> bytes:
    """Build and validate a pain.001 credit-transfer initiation with ``sepaxml``.

    Args:
        debtor: The merchant account the money leaves from.
        msg_id: The message id.
        payments: ``sepaxml`` payment dicts (name, IBAN, optional BIC, amount in cents,
            execution_date, description, endtoend_id).
        version: The pain.001 schema version.
    """
    config: dict[str, Any] = {"name": debtor.name, "IBAN": debtor.iban, "batch": True, "currency": "EUR"}
    if debtor.bic:
        config["BIC"] = debtor.bic
    document = _PinnedTransfer(config, version, msg_id)
    for payment in payments:
        document.add_payment(dict(payment))
    xml: bytes = document.export(validate=False)
    validate_xml(xml, version)
    return xml


class _PinnedIds:
    """Mixin pinning ``MsgId`` and ``PmtInfId``.

    ``sepaxml`` draws them at random; deriving them from the idempotency key makes a resent
    file carry the same identifiers, so the bank's duplicate-file check recognises it.
    """

    msg_id: str
    _xml: Any

    def __init__(self, config: dict[str, Any], schema: str, msg_id: str) -> None:
        self._pinned_msg_id = msg_id
        super().__init__(config, schema=schema)  # type: ignore[call-arg]

    def _create_header(self) -> None:
        self.msg_id = self._pinned_msg_id
        super()._create_header()  # type: ignore[misc]

    def _finalize_batch(self) -> None:
        super()._finalize_batch()  # type: ignore[misc]
        for index, node in enumerate(self._xml.iter("PmtInfId")):
            node.text = f"{self.msg_id}-{index}"


class _PinnedDD(_PinnedIds, SepaDD):
    """``SepaDD`` with pinned identifiers."""


class _PinnedTransfer(_PinnedIds, SepaTransfer):
    """``SepaTransfer`` with pinned identifiers."""


def default_collection_date(today: dt.date | None = None) -> dt.date:
    """The earliest SDD Core collection date the adapter asks for: the next weekday (D-1 rule)."""
    day = (today or dt.date.today()) + dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


class GatewayItem(msgspec.Struct, kw_only=True):
    """One transaction as the gateway reports it (batch answer, status call, notification)."""

    end_to_end_id: str
    status: str
    kind: str = ""
    amount: int | None = None  # euro cents, as in the pain file
    currency: str = "EUR"
    reason_code: str | None = None
    r_type: str | None = None
    counterparty_name: str | None = None
    counterparty_iban: str | None = None
    batch_id: str | None = None


class BatchAnswer(msgspec.Struct, kw_only=True):
    """The gateway's answer to a submitted pain file (a pain.002 status report, as JSON)."""

    batch_id: str
    msg_id: str
    group_status: str
    transactions: list[GatewayItem] = msgspec.field(default_factory=list)
    reason_code: str | None = None


class Notification(msgspec.Struct, kw_only=True):
    """A signed settlement / R-transaction notification (camt.054 / pacs.004, as JSON)."""

    id: str
    type: str
    created: int
    transaction: GatewayItem


batch_decoder = msgspec.json.Decoder(BatchAnswer)
item_decoder = msgspec.json.Decoder(GatewayItem)
notification_decoder = msgspec.json.Decoder(Notification)

# ISO 20022 transaction statuses (ExternalPaymentTransactionStatus1Code), plus RTND for an
# item returned after settlement (pacs.004). RJCT and RTND are classified by the reason code.
STATUS_MAP: dict[str, Outcome] = {
    "RCVD": Outcome.PENDING,
    "PDNG": Outcome.PENDING,
    "ACTC": Outcome.PENDING,
    "ACCP": Outcome.PENDING,
    "ACSP": Outcome.PENDING,
    # Settled. A direct debit can still be returned for 8 weeks (13 months if unauthorised):
    # a later RTND notification reverses it, so the ledger must allow the reversal.
    "ACSC": Outcome.APPROVED,
    "ACWC": Outcome.APPROVED,
    "RJCT": Outcome.DECLINED_HARD,
    "RTND": Outcome.DECLINED_HARD,
}

# R-transaction types (reject before settlement, refusal by the debtor before it, return, refund
# and reversal after it, recall by the creditor).
R_TYPES = frozenset({"reject", "refusal", "return", "refund", "reversal", "recall"})

# Every reason code SEPA R-transactions use, per the cascade rules (reference 4.8): the account
# or the debtor will not pay, or the data must be corrected -> hard (never re-present
# automatically); funds may arrive later -> soft (a later re-presentation is allowed); the file,
# the creditor set-up or interbank settlement failed -> technical (resubmitting, possibly through
# another bank, may work).
REASON_MAP: dict[str, Outcome] = {
    "AC01": Outcome.DECLINED_HARD,  # incorrect account number (IBAN)
    "AC04": Outcome.DECLINED_HARD,  # account closed
    "AC06": Outcome.DECLINED_HARD,  # account blocked
    "AC13": Outcome.DECLINED_HARD,  # invalid debtor account type
    "AG01": Outcome.DECLINED_HARD,  # transaction forbidden on this account (e.g. savings)
    "AG02": Outcome.TECHNICAL,  # invalid bank operation code (our file)
    "AM04": Outcome.DECLINED_SOFT,  # insufficient funds
    "AM05": Outcome.DECLINED_HARD,  # duplicate collection: never collect it again
    "BE05": Outcome.TECHNICAL,  # unrecognised initiating party (creditor set-up)
    "CNOR": Outcome.TECHNICAL,  # creditor bank not registered under this scheme
    "DNOR": Outcome.TECHNICAL,  # debtor bank not reachable under this scheme
    "ED05": Outcome.TECHNICAL,  # interbank settlement failed
    "FF01": Outcome.TECHNICAL,  # invalid file format
    "FOCR": Outcome.DECLINED_HARD,  # returned after a cancellation request
    "MD01": Outcome.DECLINED_HARD,  # no valid mandate / unauthorised transaction
    "MD02": Outcome.DECLINED_HARD,  # mandate data missing or incorrect
    "MD06": Outcome.DECLINED_HARD,  # refund requested by the debtor (8-week right)
    "MD07": Outcome.DECLINED_HARD,  # debtor deceased
    "MS02": Outcome.DECLINED_HARD,  # refused by the debtor
    # "Reason not specified": several banks use it for insufficient funds for data-protection
    # reasons, so it is treated as possibly temporary.
    "MS03": Outcome.DECLINED_SOFT,
    "RC01": Outcome.DECLINED_HARD,  # BIC incorrect
    "RR01": Outcome.DECLINED_HARD,  # regulatory: debtor account or identification missing
    "RR02": Outcome.DECLINED_HARD,  # regulatory: debtor name or address missing
    "RR03": Outcome.TECHNICAL,  # regulatory: creditor name or address missing (our set-up)
    "RR04": Outcome.DECLINED_HARD,  # regulatory reason (e.g. sanctions)
    "SL01": Outcome.DECLINED_HARD,  # debtor bank's specific service (debtor blocks this creditor)
    "TM01": Outcome.TECHNICAL,  # received after the cut-off time
}


def classify_reason(code: str | None) -> Outcome:
    """Outcome of a rejected or returned item; an unknown code is hard (never re-present blindly)."""
    return REASON_MAP.get(code or "", Outcome.DECLINED_HARD)


def item_outcome(item: GatewayItem) -> Outcome:
    """Classify one gateway item by status, and by reason code when it failed."""
    if item.status in {"RJCT", "RTND"}:
        return classify_reason(item.reason_code)
    return STATUS_MAP.get(item.status, Outcome.UNKNOWN)
