"""LianLian Global acquiring (CN cross-border collection): hosted checkout sessions.

Calls: ``POST /accept_payments/checkout/sessions`` (answers the hosted ``checkout_url``),
``GET /accept_payments/payments/{merchant_transaction_id}``, ``POST /accept_payments/refunds``.
Authentication is ``Authorization: Basic <token>`` plus an ``LLPAY-Signature`` on every request;
answers and notifications are signed the same way and verified (see
:mod:`adapters.lianlian.transformers` for the signing stand-in and why). ``Idempotency-Key``
carries the switch's key. The attempt id is the ``merchant_transaction_id`` and the
``provider_reference`` (LianLian's endpoints are keyed by it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import msgspec

from adapters._http import HttpResponse, HttpTransport, OutgoingRequest, TransportError
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
from adapters.lianlian import transformers as t

DEFAULT_BASE_URL = "https://global-api-sandbox.lianlianpay-inc.com"
# LianLian's Idempotency-Key length is undocumented in the sources we have; 64 is safe.
KEY_LIMIT = 64
# LianLian documents no lag for its payment query; a session it does not know this long after
# the attempt is taken as never created.
QUERY_CONSISTENCY_S = 600.0


class LianLianAdapter(ProviderAdapter):
    """LianLian hosted checkout: ``requires_action`` with the checkout URL, completed by notification.

    ``Credentials``: ``api_key`` is the API token, ``webhook_secret`` the signing key (requests,
    answers and notifications), ``account_id`` the LianLian merchant id.
    """

    name = "lianlian"
    flows = frozenset({Flow.AUTHORIZE, Flow.REFUND, Flow.SYNC, Flow.WEBHOOK})
    method_types = frozenset({"card", "hosted_checkout"})

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        total_timeout: float = 10.0,
        consistency_window_s: float = QUERY_CONSISTENCY_S,
    ) -> None:
        """Create the adapter with one pooled transport that signs every request.

        Args:
            credentials: See the class docstring.
            total_timeout: Deadline in seconds for one call including retries.
            consistency_window_s: How long after an attempt a query that finds nothing is still
                not proof that LianLian never created the session.
        """
        super().__init__(credentials)
        self.consistency_window_s = consistency_window_s
        self.http = HttpTransport(
            "lianlian",
            self.credentials.base_url or DEFAULT_BASE_URL,
            total_timeout=total_timeout,
            idempotency_header="Idempotency-Key",
            signer=self._sign,
            default_headers={"Authorization": f"Basic {self.credentials.api_key}", "Accept": "application/json"},
        )

    async def close(self) -> None:
        """Release pooled connections."""
        await self.http.close()

    def _sign(self, outgoing: OutgoingRequest) -> None:
        body = msgspec.json.decode(outgoing.body) if outgoing.body else {}
        outgoing.headers[t.SIGNATURE_HEADER] = t.signature_header(
            self.credentials.webhook_secret, body, path=outgoing.path, timestamp=int(time.time())
        )

    def _open(self, response: HttpResponse) -> dict[str, Any] | ProviderResult:
        if response.status >= 500 or response.status == 429:
            return ProviderResult(outcome=http_error_outcome(response.status), raw_status=f"http_{response.status}")
        try:
            body = msgspec.json.decode(response.body)
            if not isinstance(body, dict):
                raise TypeError
            t.verify_signature(self.credentials.webhook_secret, body, response.headers.get("llpay-signature", ""))
        except (msgspec.DecodeError, TypeError):
            if response.status >= 300:
                return ProviderResult(outcome=http_error_outcome(response.status), raw_status=f"http_{response.status}")
            return undecodable_outcome(response.status)
        except WebhookRejected:
            # An answer that cannot be verified is treated as no answer.
            return ProviderResult(outcome=Outcome.UNKNOWN, raw_status="bad_response_signature")
        if response.status >= 300:
            try:
                error = msgspec.convert(body, t.ApiError)
            except msgspec.ValidationError:
                error = t.ApiError()
            return ProviderResult(
                outcome=http_error_outcome(response.status),
                raw_status=f"http_{response.status}",
                code=error.code or None,
                message=error.message[:200] or None,
            )
        return body

    async def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """Create a checkout session (``requires_action`` with its ``checkout_url``)."""
        body: dict[str, Any] = {
            "merchant_id": self.credentials.account_id,
            "merchant_transaction_id": request.attempt_id,
            "order_amount": t.to_lianlian_amount(request.amount, request.currency),
            "order_currency": request.currency.upper(),
            "redirect_url": request.return_url or "",
            "customer": {k: v for k, v in {"email": request.customer_email}.items() if v},
            "metadata": {"payment_id": request.payment_id},
        }
        try:
            response = await self.http.request(
                "POST",
                "/accept_payments/checkout/sessions",
                json=body,
                idempotency_key=provider_key(request.idempotency_key, KEY_LIMIT),
            )
        except TransportError as exc:
            result = transport_outcome(exc)
            result.provider_reference = request.attempt_id
            return result
        return self._payment_result(response, request.attempt_id)

    def _payment_result(self, response: HttpResponse, reference: str) -> ProviderResult:
        opened = self._open(response)
        if isinstance(opened, ProviderResult):
            opened.provider_reference = reference
            return opened
        try:
            return payment_outcome(msgspec.convert(opened, t.Payment))
        except (msgspec.ValidationError, ValueError):
            return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=reference, raw_status="unreadable")

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """``GET /accept_payments/payments/{merchant_transaction_id}`` for an authorization.

        A refund whose answer was lost stays ``unknown`` (resolved by resending it with the same
        Idempotency-Key). A failed query is ``unknown``; a 404 is proof only once
        ``consistency_window_s`` has passed since the attempt.
        """
        reference = request.provider_reference or request.attempt_id
        if request.operation != "authorize":
            return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=reference, raw_status="no_lookup")
        try:
            response = await self.http.request("GET", f"/accept_payments/payments/{reference}")
        except TransportError as exc:
            return ProviderResult(
                outcome=Outcome.UNKNOWN, provider_reference=reference, raw_status="timeout", message=str(exc)
            )
        if response.status == 404:
            return not_found_outcome(request, self.consistency_window_s)
        if response.status >= 300:
            return lookup_failed(response.status, reference)
        return self._payment_result(response, reference)

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """``POST /accept_payments/refunds`` for part or all of a paid session."""
        body = {
            "merchant_id": self.credentials.account_id,
            "merchant_refund_id": request.refund_id,
            "original_merchant_transaction_id": request.provider_reference,
            "refund_amount": t.to_lianlian_amount(request.amount, request.currency),
            "refund_currency": request.currency.upper(),
        }
        try:
            response = await self.http.request(
                "POST",
                "/accept_payments/refunds",
                json=body,
                idempotency_key=provider_key(request.idempotency_key, KEY_LIMIT),
            )
        except TransportError as exc:
            return transport_outcome(exc)
        opened = self._open(response)
        if isinstance(opened, ProviderResult):
            return opened
        try:
            refund = msgspec.convert(opened, t.Refund)
            amount = (
                t.from_lianlian_amount(refund.refund_amount, refund.refund_currency)
                if refund.refund_amount and refund.refund_currency
                else None
            )
        except (msgspec.ValidationError, ValueError):
            return ProviderResult(outcome=Outcome.UNKNOWN, raw_status="unreadable")
        outcome = t.REFUND_STATUS_MAP.get(refund.refund_status, Outcome.UNKNOWN)
        return ProviderResult(
            outcome=outcome,
            provider_reference=refund.ll_refund_id or refund.merchant_refund_id,
            raw_status=refund.refund_status,
            code=refund.failure_code,
            amount=amount,
        )

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify ``LLPAY-Signature`` and normalize a payment notification.

        Raises:
            WebhookRejected: On a missing, forged or stale signature, or a malformed body.
        """
        try:
            raw = msgspec.json.decode(body)
            if not isinstance(raw, dict):
                raise TypeError
        except (msgspec.DecodeError, TypeError):
            raise WebhookRejected("malformed") from None
        header = next((v for k, v in headers.items() if k.lower() == t.SIGNATURE_HEADER.lower()), "")
        t.verify_signature(self.credentials.webhook_secret, raw, header)
        try:
            payment = msgspec.convert(raw, t.Payment)
        except msgspec.ValidationError:
            raise WebhookRejected("malformed") from None
        result = payment_outcome(payment)
        return [
            WebhookEvent(
                provider=self.name,
                event_id=payment.notification_id or f"{payment.merchant_transaction_id}:{payment.payment_status}",
                event_type=payment.notification_type or "payment",
                provider_reference=payment.merchant_transaction_id,
                outcome=result.outcome,
                payment_id=(payment.metadata or {}).get("payment_id"),
                amount=result.amount,
                currency=payment.order_currency or None,
                code=result.code,
                raw_status=payment.payment_status,
            )
        ]


def payment_outcome(payment: t.Payment) -> ProviderResult:
    """Classify a payment object (create, query or notification)."""
    status = payment.payment_status
    outcome = t.STATUS_MAP.get(status, Outcome.UNKNOWN)
    next_action = None
    if status == "PF":
        outcome = t.classify_failure(payment.failure_code)
    elif status == "WP" and payment.checkout_url:
        outcome = Outcome.REQUIRES_ACTION
        next_action = {"type": "redirect_to_url", "url": payment.checkout_url}
    return ProviderResult(
        outcome=outcome,
        provider_reference=payment.merchant_transaction_id,
        raw_status=status,
        code=payment.failure_code if status == "PF" else None,
        message=((payment.failure_reason or "")[:200] or None) if status == "PF" else None,
        next_action=next_action,
        amount=(
            t.from_lianlian_amount(payment.order_amount, payment.order_currency)
            if payment.order_amount and payment.order_currency
            else None
        ),
    )
