"""PingPong Checkout (CN cross-border collection), hosted cashier through API v4.

Calls (all ``POST``, JSON envelopes signed per :mod:`adapters.pingpong.transformers`):
``/v4/payment/prePay`` creates the order and answers the cashier's ``paymentUrl`` (3DS runs in
the cashier), ``/v4/payment/query`` reads it, ``/v4/payment/refund`` refunds it. Asynchronous
notifications carry the same signed envelope and must be answered with the body ``OK``
(:data:`ACK_BODY`). The switch's attempt id is the ``merchantTransactionId``; PingPong's
``transactionId`` is the ``provider_reference``. Responses are signed too and are verified: an
answer with a bad signature is treated as no answer (``unknown``).
"""

from __future__ import annotations

import hmac
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
    provider_key,
    transport_outcome,
    undecodable_outcome,
)
from adapters.pingpong import transformers as t

DEFAULT_BASE_URL = "https://sandbox-acquirer-payment.pingpongx.com"
ACK_BODY = t.ACK_BODY
# PingPong documents no length for ``requestId`` that we could confirm; 64 characters is safe.
KEY_LIMIT = 64
# PingPong documents no lag for its query; an order it does not know this long after the
# attempt is taken as never created.
QUERY_CONSISTENCY_S = 600.0


class PingPongAdapter(ProviderAdapter):
    """PingPong's hosted cashier: ``requires_action`` with the cashier URL, completed by notification.

    ``Credentials``: ``account_id`` is the store's ``accId``, ``api_key`` the salt (it signs
    requests and verifies answers and notifications), ``extra["client_id"]`` the merchant
    ``clientId`` (by PingPong's convention the ``accId`` without its last three digits, used
    when not given).
    """

    webhook_ack = ACK_BODY

    name = "pingpong"
    flows = frozenset({Flow.AUTHORIZE, Flow.REFUND, Flow.SYNC, Flow.WEBHOOK})
    method_types = frozenset({"card", "hosted_checkout"})

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        total_timeout: float = 10.0,
        consistency_window_s: float = QUERY_CONSISTENCY_S,
    ) -> None:
        """Create the adapter with one pooled transport.

        Args:
            credentials: See the class docstring.
            total_timeout: Deadline in seconds for one call including retries.
            consistency_window_s: How long after an attempt a query that finds nothing is still
                not proof that PingPong never created the order.
        """
        super().__init__(credentials)
        self.consistency_window_s = consistency_window_s
        self.acc_id = self.credentials.account_id
        self.client_id = self.credentials.extra.get("client_id") or self.acc_id[:-3]
        self.http = HttpTransport(
            "pingpong",
            self.credentials.base_url or DEFAULT_BASE_URL,
            total_timeout=total_timeout,
            # Idempotency is the ``requestId`` inside the signed body, not a header.
            idempotency_header=None,
            default_headers={"Accept": "application/json"},
        )

    async def close(self) -> None:
        """Release pooled connections."""
        await self.http.close()

    def envelope(self, biz: dict[str, Any]) -> dict[str, str]:
        """Wrap ``bizContent`` in the signed v4 envelope."""
        body = {
            "accId": self.acc_id,
            "clientId": self.client_id,
            "signType": t.SIGN_TYPE,
            "version": t.API_VERSION,
            "bizContent": t.biz_content(biz),
        }
        body["sign"] = t.sign(self.credentials.api_key, body)
        return body

    def verify(self, raw: Mapping[str, Any]) -> None:
        """Check an envelope's ``sign`` in constant time.

        Raises:
            WebhookRejected: ``bad_signature`` when it is missing or wrong.
        """
        received = str(raw.get("sign") or "")
        flat = {k: v for k, v in raw.items() if isinstance(v, str)}
        if not self.credentials.api_key or not received:
            raise WebhookRejected("bad_signature")
        if not hmac.compare_digest(t.sign(self.credentials.api_key, flat), received.upper()):
            raise WebhookRejected("bad_signature")

    async def _call(self, path: str, biz: dict[str, Any]) -> ProviderResult | t.Transaction:
        try:
            # A resend carries the same requestId / merchantTransactionId, which PingPong
            # de-duplicates, so retrying is safe.
            response = await self.http.request("POST", path, json=self.envelope(biz), retry_safe=True)
        except TransportError as exc:
            return transport_outcome(exc)
        return self._open(response)

    def _open(self, response: HttpResponse) -> ProviderResult | t.Transaction:
        if response.status >= 300:
            return ProviderResult(outcome=http_error_outcome(response.status), raw_status=f"http_{response.status}")
        try:
            raw = msgspec.json.decode(response.body)
            envelope = t.envelope_decoder.decode(response.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return undecodable_outcome(response.status)
        try:
            # Answers are signed like requests; an unverifiable answer is treated as none.
            self.verify(raw)
        except WebhookRejected:
            return ProviderResult(outcome=Outcome.UNKNOWN, raw_status="bad_response_signature")
        if envelope.code and envelope.code not in {"000000", "001000", "002000"} and not envelope.bizContent:
            # Refused before any transaction existed (bad parameter, signature, configuration).
            return ProviderResult(
                outcome=t.classify_envelope_code(envelope.code),
                raw_status="error",
                code=envelope.code,
                message=(envelope.description or "")[:200] or None,
            )
        try:
            return t.transaction_decoder.decode(envelope.bizContent or "{}")
        except (msgspec.DecodeError, msgspec.ValidationError):
            return ProviderResult(outcome=Outcome.UNKNOWN, raw_status="unreadable_answer")

    async def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """``/v4/payment/prePay``: create the cashier order (``requires_action`` with its URL)."""
        biz: dict[str, Any] = {
            "merchantTransactionId": request.attempt_id,
            "requestId": provider_key(request.idempotency_key, KEY_LIMIT),
            "amount": t.to_pingpong_amount(request.amount, request.currency),
            "currency": request.currency.upper(),
            "captureDelayHours": 0,
            "payResultUrl": request.return_url or "",
            "payCancelUrl": request.details.get("cancel_url", request.return_url or ""),
            "remark": request.payment_id,
            "customer": {k: v for k, v in {"email": request.customer_email}.items() if v},
        }
        answer = await self._call("/v4/payment/prePay", biz)
        return answer if isinstance(answer, ProviderResult) else _classified(answer)

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """``/v4/payment/query`` by ``transactionId``, or by the attempt id when it is unknown.

        Only the payment can be queried; a refund whose answer was lost stays ``unknown`` and is
        resolved by resending it with the same ``requestId``. A failed query is ``unknown``; one
        that finds nothing (107001) is proof only once ``consistency_window_s`` has passed.
        """
        if request.operation != "authorize":
            return ProviderResult(
                outcome=Outcome.UNKNOWN, provider_reference=request.provider_reference, raw_status="no_lookup"
            )
        biz = (
            {"transactionId": request.provider_reference}
            if request.provider_reference
            else {"merchantTransactionId": request.attempt_id}
        )
        answer = await self._call("/v4/payment/query", biz)
        if not isinstance(answer, ProviderResult):
            return _classified(answer)
        if answer.code == t.NOT_FOUND_CODE:
            return not_found_outcome(request, self.consistency_window_s)
        if answer.outcome is Outcome.TECHNICAL:
            # A query that failed (or was refused) proves nothing about the payment.
            return lookup_failed(0, request.provider_reference, answer.code or answer.raw_status)
        return answer

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """``/v4/payment/refund`` of part or all of a paid transaction."""
        biz = {
            "transactionId": request.provider_reference,
            "refundId": request.refund_id,
            "requestId": provider_key(request.idempotency_key, KEY_LIMIT),
            "amount": t.to_pingpong_amount(request.amount, request.currency),
            "currency": request.currency.upper(),
        }
        answer = await self._call("/v4/payment/refund", biz)
        if isinstance(answer, ProviderResult):
            return answer
        result = _classified(answer)
        result.provider_reference = answer.refundId or request.refund_id
        return result

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify a notification envelope's ``sign`` and normalize it (answer it with ``OK``).

        Raises:
            WebhookRejected: On a missing or forged signature or a malformed body.
        """
        try:
            raw = msgspec.json.decode(body)
            if not isinstance(raw, dict):
                raise TypeError
        except (msgspec.DecodeError, TypeError):
            raise WebhookRejected("malformed") from None
        self.verify(raw)
        try:
            tx = t.transaction_decoder.decode(str(raw.get("bizContent") or ""))
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise WebhookRejected("malformed") from None
        result = transaction_outcome(tx)
        return [
            WebhookEvent(
                provider=self.name,
                # FAILED can repeat within one order (the shopper retries in the cashier, each
                # attempt with its own requestId); PingPong's resends repeat all three.
                event_id=f"{tx.transactionId}:{tx.status}:{tx.requestId or ''}",
                event_type=tx.notifyType or "RECHARGE",
                provider_reference=tx.transactionId,
                outcome=result.outcome,
                payment_id=tx.remark,
                amount=result.amount,
                currency=tx.currency or None,
                code=result.code,
                raw_status=tx.status,
            )
        ]


def _classified(tx: t.Transaction) -> ProviderResult:
    # An amount that does not convert is an answer we cannot read: unknown, never a refusal.
    try:
        return transaction_outcome(tx)
    except ValueError:
        return ProviderResult(
            outcome=Outcome.UNKNOWN, provider_reference=tx.transactionId or None, raw_status="unreadable"
        )


def transaction_outcome(tx: t.Transaction) -> ProviderResult:
    """Classify a transaction ``bizContent`` (order, query, refund or notification)."""
    outcome = t.STATUS_MAP.get(tx.status, Outcome.UNKNOWN)
    next_action = None
    if tx.status == "FAILED":
        outcome = t.classify_code(tx.code)
    elif tx.status in {"INIT", "PROCESSING"} and tx.paymentUrl:
        outcome = Outcome.REQUIRES_ACTION
        next_action = {"type": "redirect_to_url", "url": tx.paymentUrl}
    failed = outcome not in (Outcome.APPROVED, Outcome.PENDING, Outcome.REQUIRES_ACTION)
    return ProviderResult(
        outcome=outcome,
        provider_reference=tx.transactionId or None,
        raw_status=tx.status,
        code=tx.code if failed else None,
        message=((tx.description or "")[:200] or None) if failed else None,
        next_action=next_action,
        amount=t.from_pingpong_amount(tx.amount, tx.currency) if tx.amount and tx.currency else None,
    )
