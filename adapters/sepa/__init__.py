"""SEPA Direct Debit (pain.008) and SEPA Credit Transfer (pain.001) through a bank gateway.

Banks take SEPA files over EBICS, SFTP or host-to-host APIs, each with its own envelope; this
adapter talks to a small JSON-over-HTTPS gateway contract (documented in docs/providers.md and
served by the simulator) and keeps everything SEPA-specific in the ISO 20022 files it submits:

* ``POST /v1/batches`` with a pain.008 or pain.001 document (``application/xml``) answers the
  gateway's pain.002 status report as JSON (group status and one status per transaction).
* ``GET /v1/transactions/{end_to_end_id}`` reads one transaction's status.
* Notifications (settlement from camt.054, R-transactions from pacs.004/pain.002) are JSON,
  signed ``Sepa-Signature: t=<unix>,v1=<hex HMAC-SHA256(webhook_secret, "<t>.<body>")>``, and
  refused outside a 5-minute window.

Flows: ``authorize`` is a mandate-backed direct debit and answers ``pending``; settlement and
R-transactions arrive later by notification (or ``sync``). ``refund`` sends the money back to the
debtor's IBAN with a pain.001 credit transfer. Payouts to any IBAN, which the switch has no flow
for, are the extra :meth:`SepaAdapter.credit_transfer`. The end-to-end id is the switch's
attempt id (refund id for a refund, payout id for a payout) and is the ``provider_reference``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from adapters._http import HttpResponse, HttpTransport, TransportError
from adapters.base import (
    AuthorizeRequest,
    Credentials,
    Flow,
    Outcome,
    ProviderAdapter,
    ProviderResult,
    RefundRequest,
    SyncRequest,
    WebhookEvent,
    WebhookRejected,
    http_error_outcome,
    lookup_failed,
    not_found_outcome,
    transport_outcome,
)
from adapters.sepa import transformers as t

DEFAULT_BASE_URL = "https://sepa-gateway.invalid"
SIGNATURE_HEADER = "Sepa-Signature"
SIGNATURE_TOLERANCE_S = 300
# The gateway contract promises no read-after-write bound for its transaction look-up; an end-to-end
# id it does not know this long after the attempt is taken as a file it never took.
LOOKUP_CONSISTENCY_S = 600.0


def sign_notification(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """Return the ``Sepa-Signature`` header value for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def verify_notification(secret: str, body: bytes, header: str, tolerance: int = SIGNATURE_TOLERANCE_S) -> None:
    """Check a ``Sepa-Signature`` header.

    Raises:
        WebhookRejected: ``bad_signature`` (missing, malformed or wrong), or ``stale``.
    """
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
        received = parts["v1"]
    except (KeyError, ValueError):
        raise WebhookRejected("bad_signature") from None
    if not secret:
        raise WebhookRejected("bad_signature")
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, received):
        raise WebhookRejected("bad_signature")
    if abs(time.time() - ts) > tolerance:
        raise WebhookRejected("stale")


class PayoutRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A SEPA credit transfer to any account (a payout; the switch's flows have none).

    ``amount`` is in euro cents.
    """

    payout_id: str
    idempotency_key: str
    amount: int
    currency: str
    creditor_name: str
    iban: str
    bic: str | None = None
    description: str = ""
    execution_date: dt.date | None = None

    def __repr__(self) -> str:
        """Show the account masked."""
        return f"PayoutRequest(payout_id={self.payout_id!r}, amount={self.amount}, currency={self.currency!r})"

    __str__ = __repr__


class SepaAdapter(ProviderAdapter):
    """SEPA through a bank gateway.

    ``Credentials``: ``api_key`` is the gateway's bearer token, ``webhook_secret`` the HMAC key of
    notifications, ``extra`` holds the merchant account: ``creditor_name``, ``creditor_iban``,
    optional ``creditor_bic``, and ``creditor_id`` (the SEPA creditor identifier, for debits).
    The debtor comes in ``AuthorizeRequest.details``: ``iban``, optional ``bic``, ``mandate_id``,
    ``mandate_date`` (ISO date), optional ``sequence_type`` (``OOFF`` default, ``FRST``,
    ``RCUR``, ``FNAL``) and ``collection_date``; the debtor's name is ``customer_name``.
    """

    name = "sepa"
    flows = frozenset({Flow.AUTHORIZE, Flow.REFUND, Flow.SYNC, Flow.WEBHOOK})
    method_types = frozenset({"sepa_debit"})

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        total_timeout: float = 10.0,
        consistency_window_s: float = LOOKUP_CONSISTENCY_S,
    ) -> None:
        """Create the adapter with one pooled transport.

        Args:
            credentials: See the class docstring.
            total_timeout: Deadline in seconds for one call including retries.
            consistency_window_s: How long after an attempt a look-up that finds nothing is
                still not proof that the gateway never took the file.
        """
        super().__init__(credentials)
        self.consistency_window_s = consistency_window_s
        self.pain008_version = self.credentials.extra.get("pain008_version", t.PAIN_008_VERSION)
        self.pain001_version = self.credentials.extra.get("pain001_version", t.PAIN_001_VERSION)
        self.http = HttpTransport(
            "sepa",
            self.credentials.base_url or DEFAULT_BASE_URL,
            total_timeout=total_timeout,
            # No idempotency header: the MsgId derived from the key is what the bank de-duplicates.
            idempotency_header=None,
            default_headers={"Authorization": f"Bearer {self.credentials.api_key}", "Accept": "application/json"},
        )

    async def close(self) -> None:
        """Release pooled connections."""
        await self.http.close()

    def creditor(self) -> t.Creditor:
        """The merchant's account from ``Credentials.extra``, validated.

        Raises:
            InvalidBankDetails: When the configured IBAN or BIC is wrong or missing.
        """
        extra = self.credentials.extra
        if not extra.get("creditor_iban") or not extra.get("creditor_name"):
            raise t.InvalidBankDetails("RR03", "the merchant's SEPA account (creditor_name, creditor_iban) is not set")
        bic = extra.get("creditor_bic")
        return t.Creditor(
            name=extra["creditor_name"],
            iban=t.validate_iban(extra["creditor_iban"]),
            bic=t.validate_bic(bic) if bic else None,
            creditor_id=extra.get("creditor_id", ""),
        )

    def debit_payment(self, request: AuthorizeRequest) -> dict[str, Any]:
        """The ``sepaxml`` payment dict of one direct debit, with every field checked.

        Raises:
            InvalidBankDetails: With the reason code a bank would answer.
            AmountNotRepresentable: For a non-EUR or out-of-range amount.
        """
        details = request.details
        payment: dict[str, Any] = {
            "IBAN": t.validate_iban(details.get("iban", "")),
            "amount": t.to_sepa_amount(request.amount, request.currency),
            "endtoend_id": request.attempt_id[:35],
            "description": request.reference or request.payment_id,
        }
        if details.get("bic"):
            payment["BIC"] = t.validate_bic(details["bic"])
        if not request.customer_name:
            raise t.InvalidBankDetails("RR02", "the debtor's name (customer_name) is required")
        payment["name"] = request.customer_name
        sequence = details.get("sequence_type", "OOFF").upper()
        if not details.get("mandate_id") or sequence not in t.SEQUENCE_TYPES:
            raise t.InvalidBankDetails("MD02", "mandate_id and a sequence_type of FRST/RCUR/OOFF/FNAL are required")
        try:
            payment["mandate_date"] = dt.date.fromisoformat(details.get("mandate_date", ""))
            collection = details.get("collection_date")
            payment["collection_date"] = (
                dt.date.fromisoformat(collection) if collection else t.default_collection_date()
            )
        except ValueError:
            raise t.InvalidBankDetails("MD02", "mandate_date and collection_date must be ISO dates") from None
        payment["mandate_id"] = details["mandate_id"]
        payment["type"] = sequence
        return payment

    async def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """Submit a one-transaction pain.008; the answer is ``pending`` until settlement."""
        try:
            xml = t.build_pain008(
                self.creditor(),
                t.message_id(request.idempotency_key),
                [self.debit_payment(request)],
                self.pain008_version,
            )
        except t.InvalidBankDetails as exc:
            return _refused_locally(exc, request.attempt_id)
        except t.AmountNotRepresentable as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        return await self._submit(xml, request.attempt_id[:35])

    async def _submit(self, xml: bytes, end_to_end_id: str) -> ProviderResult:
        try:
            # Safe to resend: the gateway answers a known MsgId with its first status report.
            response = await self.http.request(
                "POST", "/v1/batches", content=xml, content_type="application/xml", retry_safe=True
            )
        except TransportError as exc:
            result = transport_outcome(exc)
            result.provider_reference = end_to_end_id
            return result
        if response.status >= 300:
            return _http_failure(response, end_to_end_id)
        try:
            answer = t.batch_decoder.decode(response.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=end_to_end_id, raw_status="unreadable")
        if answer.group_status == "RJCT":
            return ProviderResult(
                outcome=t.classify_reason(answer.reason_code),
                provider_reference=end_to_end_id,
                raw_status="RJCT",
                code=answer.reason_code,
            )
        item = next((i for i in answer.transactions if i.end_to_end_id == end_to_end_id), None)
        if item is None:
            return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=end_to_end_id, raw_status="missing")
        return _item_result(item)

    async def _transaction(self, end_to_end_id: str) -> t.GatewayItem | ProviderResult | None:
        """Read one transaction: the item, None when the gateway does not know it, or an ``unknown`` result."""
        try:
            response = await self.http.request("GET", f"/v1/transactions/{end_to_end_id}")
        except TransportError as exc:
            return ProviderResult(
                outcome=Outcome.UNKNOWN, provider_reference=end_to_end_id, raw_status="timeout", message=str(exc)
            )
        if response.status == 404:
            return None
        if response.status >= 300:
            return lookup_failed(response.status, end_to_end_id)
        try:
            return t.item_decoder.decode(response.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=end_to_end_id, raw_status="unreadable")

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """Read a transaction by end-to-end id: the attempt's debit, or the refund's credit transfer.

        A debit's end-to-end id is the attempt id (or the reference), a refund's is the refund id.
        A gateway that does not know the id is proof only once ``consistency_window_s`` has passed.
        """
        if request.operation == "refund" and request.operation_id:
            end_to_end_id = request.operation_id[:35]
        elif request.operation in {"authorize", "refund"}:
            end_to_end_id = (request.provider_reference or request.attempt_id)[:35]
        else:
            return ProviderResult(outcome=Outcome.UNKNOWN, raw_status="no_lookup")
        found = await self._transaction(end_to_end_id)
        if found is None:
            return not_found_outcome(request, self.consistency_window_s)
        return found if isinstance(found, ProviderResult) else _item_result(found)

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """Send a settled debit back to the debtor's IBAN with a pain.001 credit transfer."""
        found = await self._transaction(request.provider_reference)
        if found is None or isinstance(found, ProviderResult):
            # The credit transfer was never submitted: nothing happened.
            return ProviderResult(
                outcome=Outcome.TECHNICAL,
                provider_reference=request.provider_reference,
                raw_status="lookup_failed" if found is not None else "not_found",
                message=found.message if found is not None else "the gateway does not know the debit",
            )
        if found.status not in {"ACSC", "ACWC"} or not found.counterparty_iban:
            return ProviderResult(
                outcome=Outcome.DECLINED_HARD,
                provider_reference=request.provider_reference,
                raw_status=found.status,
                code="NOT_SETTLED",
                message="only a settled direct debit can be refunded by credit transfer",
            )
        if found.amount is not None and request.amount > found.amount:
            return ProviderResult(
                outcome=Outcome.TECHNICAL, raw_status="invalid_request", message="refund exceeds the debit"
            )
        payout = PayoutRequest(
            payout_id=request.refund_id,
            idempotency_key=request.idempotency_key,
            amount=request.amount,
            currency=request.currency,
            creditor_name=found.counterparty_name or "Debtor",
            iban=found.counterparty_iban,
            description=f"Refund {request.provider_reference}",
        )
        return await self.credit_transfer(payout)

    async def credit_transfer(self, request: PayoutRequest) -> ProviderResult:
        """Submit a one-transaction pain.001 (payout); the answer is ``pending`` until settled."""
        try:
            payment: dict[str, Any] = {
                "name": request.creditor_name,
                "IBAN": t.validate_iban(request.iban),
                "amount": t.to_sepa_amount(request.amount, request.currency),
                "execution_date": request.execution_date or dt.date.today(),
                "description": request.description or request.payout_id,
                "endtoend_id": request.payout_id[:35],
            }
            if request.bic:
                payment["BIC"] = t.validate_bic(request.bic)
            xml = t.build_pain001(
                self.creditor(), t.message_id(request.idempotency_key), [payment], self.pain001_version
            )
        except t.InvalidBankDetails as exc:
            return _refused_locally(exc, request.payout_id[:35])
        except t.AmountNotRepresentable as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        return await self._submit(xml, request.payout_id[:35])

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify ``Sepa-Signature`` and normalize a settlement or R-transaction notification.

        Raises:
            WebhookRejected: On a missing, forged or stale signature, or a malformed body.
        """
        header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), "")
        verify_notification(self.credentials.webhook_secret, body, header)
        try:
            note = t.notification_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise WebhookRejected("malformed") from None
        item = note.transaction
        return [
            WebhookEvent(
                provider=self.name,
                event_id=note.id,
                event_type=note.type,
                provider_reference=item.end_to_end_id,
                outcome=t.item_outcome(item),
                amount=item.amount,
                currency=item.currency,
                code=item.reason_code,
                raw_status=item.status,
                reversal=item.status == "RTND",
            )
        ]


def _item_result(item: t.GatewayItem) -> ProviderResult:
    outcome = t.item_outcome(item)
    return ProviderResult(
        outcome=outcome,
        provider_reference=item.end_to_end_id,
        raw_status=item.status,
        code=item.reason_code if item.status in {"RJCT", "RTND"} else None,
        message=f"R-transaction: {item.r_type}" if item.r_type else None,
        amount=item.amount,
    )


def _refused_locally(exc: t.InvalidBankDetails, reference: str) -> ProviderResult:
    # Refused before sending, with the reason code the bank would have used: the same data
    # would fail at any bank, so the classification follows that code.
    return ProviderResult(
        outcome=t.classify_reason(exc.code),
        provider_reference=reference,
        raw_status="invalid_request",
        code=exc.code,
        message=str(exc),
    )


def _http_failure(response: HttpResponse, reference: str) -> ProviderResult:
    return ProviderResult(
        outcome=http_error_outcome(response.status), provider_reference=reference, raw_status=f"http_{response.status}"
    )
