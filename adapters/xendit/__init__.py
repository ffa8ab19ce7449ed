"""GrabPay (and the other e-wallets) through Xendit's e-wallet charges API.

Calls: ``POST /ewallets/charges`` (``checkout_method=ONE_TIME_PAYMENT``), ``GET
/ewallets/charges/{id}``, ``POST /ewallets/charges/{id}/refunds``. Authentication is HTTP Basic
with the secret key as user name. The charge id (``ewc_...``) is the ``provider_reference``; the
switch's attempt id is sent as ``reference_id``.

Callbacks are not signed: Xendit sends the account's static callback verification token in the
``x-callback-token`` header, compared here in constant time. Because the token does not cover
the body, the switch should confirm a final status with ``sync`` (a GET) before moving money on
it, as for Midtrans.
"""

from __future__ import annotations

import base64
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
    provider_key,
    transport_outcome,
    undecodable_outcome,
)
from adapters.xendit import transformers as t

DEFAULT_BASE_URL = "https://api.xendit.co"
CALLBACK_TOKEN_HEADER = "x-callback-token"  # noqa: S105 - a header name, not a secret
# Xendit documents no length limit for the e-wallet Idempotency-Key we could confirm; 64 is safe.
KEY_LIMIT = 64
# Error codes saying a charge with this reference or key already exists or is being processed:
# the earlier request may have moved money.
_CONFLICT_CODES = frozenset({"DUPLICATE_ERROR", "DUPLICATE_PAYMENT_REQUEST_ERROR", "IDEMPOTENCY_ERROR"})
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError, ArithmeticError)


def verify_callback_token(expected: str, headers: Mapping[str, str]) -> None:
    """Check the ``x-callback-token`` header against the account's token, in constant time.

    Raises:
        WebhookRejected: ``bad_signature`` when the header is missing or differs, or when no
            token is configured (an unconfigured adapter must not accept every callback).
    """
    received = next((v for k, v in headers.items() if k.lower() == CALLBACK_TOKEN_HEADER), "")
    if not expected or not received or not hmac.compare_digest(expected.encode(), received.encode()):
        raise WebhookRejected("bad_signature")


class XenditAdapter(ProviderAdapter):
    """E-wallet charges at Xendit: ``requires_action`` with a checkout URL, completed by callback.

    ``Credentials.api_key`` is the secret API key and ``webhook_secret`` the callback
    verification token. ``details["channel_code"]`` picks the e-wallet (default: GrabPay for the
    currency, ``PH_GRABPAY`` for PHP).
    """

    webhook_confirm_by_sync = True

    name = "xendit"
    flows = frozenset({Flow.AUTHORIZE, Flow.REFUND, Flow.SYNC, Flow.WEBHOOK})
    method_types = frozenset({"wallet", "grabpay"})

    def __init__(self, credentials: Credentials | None = None, *, total_timeout: float = 10.0) -> None:
        """Create the adapter with one pooled transport."""
        super().__init__(credentials)
        basic = base64.b64encode(f"{self.credentials.api_key}:".encode()).decode()
        self.http = HttpTransport(
            "xendit",
            self.credentials.base_url or DEFAULT_BASE_URL,
            total_timeout=total_timeout,
            # Xendit de-duplicates e-wallet charges and refunds on this header.
            idempotency_header="Idempotency-Key",
            default_headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
        )

    async def close(self) -> None:
        """Release pooled connections."""
        await self.http.close()

    def charge_body(self, request: AuthorizeRequest) -> dict[str, Any]:
        """Build the ``POST /ewallets/charges`` body.

        Raises:
            AmountNotRepresentable: When the amount or currency cannot be sent to Xendit.
        """
        currency = request.currency.upper()
        channel = request.details.get("channel_code") or t.GRABPAY_CHANNELS.get(currency)
        if not channel:
            raise t.AmountNotRepresentable(f"no GrabPay channel for {currency}; pass details.channel_code")
        properties: dict[str, str] = {}
        if request.return_url:
            properties["success_redirect_url"] = request.return_url
            properties["failure_redirect_url"] = request.details.get("failure_url", request.return_url)
        return {
            "reference_id": request.attempt_id,
            "currency": currency,
            "amount": t.to_xendit_amount(request.amount, currency),
            "checkout_method": "ONE_TIME_PAYMENT",
            "channel_code": channel,
            "channel_properties": properties,
            "metadata": {"payment_id": request.payment_id},
        }

    async def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """Create the charge; a redirect-required charge answers ``requires_action``."""
        try:
            body = t.encode_body(self.charge_body(request))
        except t.AmountNotRepresentable as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        try:
            response = await self.http.request(
                "POST",
                "/ewallets/charges",
                content=body,
                content_type="application/json",
                idempotency_key=provider_key(request.idempotency_key, KEY_LIMIT),
            )
        except TransportError as exc:
            return transport_outcome(exc)
        return self._charge_result(response)

    def _error_result(self, response: HttpResponse) -> ProviderResult:
        try:
            error = t.error_decoder.decode(response.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            error = t.ApiError()
        if response.status >= 500 or response.status == 429 or not error.error_code:
            return ProviderResult(
                outcome=http_error_outcome(response.status),
                raw_status=f"http_{response.status}",
                code=error.error_code or None,
            )
        if error.error_code in _CONFLICT_CODES or response.status == 409:
            outcome = Outcome.UNKNOWN
        else:
            # A refusal of this request with a code: nothing was processed. A code we do not know
            # is hard (the safe side: it neither cascades nor retries).
            outcome = t.classify_failure(error.error_code)
        return ProviderResult(
            outcome=outcome,
            raw_status="error",
            code=error.error_code,
            message=error.message[:200] or None,
        )

    def _charge_result(self, response: HttpResponse) -> ProviderResult:
        if response.status >= 300:
            return self._error_result(response)
        try:
            return charge_outcome(t.charge_decoder.decode(response.body))
        except _DECODE_ERRORS:
            # A 2xx we cannot read: Xendit may have created the charge.
            return undecodable_outcome(response.status)

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """``GET /ewallets/charges/{id}``; Xendit cannot look a charge up by ``reference_id``.

        Only an authorization (the charge) can be read; a refund whose answer was lost stays
        ``unknown`` and is resolved by replaying it with the same Idempotency-Key. A failed
        look-up is ``unknown``.
        """
        if not request.provider_reference or request.operation != "authorize":
            return ProviderResult(
                outcome=Outcome.UNKNOWN,
                provider_reference=request.provider_reference,
                raw_status="no_lookup" if request.provider_reference else "no_reference",
                message="Xendit charges are found by id only",
            )
        try:
            response = await self.http.request("GET", f"/ewallets/charges/{request.provider_reference}")
        except TransportError as exc:
            return ProviderResult(
                outcome=Outcome.UNKNOWN,
                provider_reference=request.provider_reference,
                raw_status="timeout",
                message=str(exc),
            )
        if response.status >= 300:
            return lookup_failed(response.status, request.provider_reference)
        return self._charge_result(response)

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """``POST /ewallets/charges/{id}/refunds`` with the switch's idempotency key."""
        try:
            body = t.encode_body(
                {"amount": t.to_xendit_amount(request.amount, request.currency), "reason": "REQUESTED_BY_CUSTOMER"}
            )
        except t.AmountNotRepresentable as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        try:
            response = await self.http.request(
                "POST",
                f"/ewallets/charges/{request.provider_reference}/refunds",
                content=body,
                content_type="application/json",
                idempotency_key=provider_key(request.idempotency_key, KEY_LIMIT),
            )
        except TransportError as exc:
            return transport_outcome(exc)
        if response.status >= 300:
            return self._error_result(response)
        try:
            refund = t.refund_decoder.decode(response.body)
            amount = t.from_xendit_amount(refund.refund_amount, refund.currency or request.currency)
        except _DECODE_ERRORS:
            return undecodable_outcome(response.status)
        outcome = t.REFUND_STATUS_MAP.get(refund.status, Outcome.UNKNOWN)
        if refund.status == "FAILED":
            outcome = t.classify_failure(refund.failure_code)
        return ProviderResult(
            outcome=outcome,
            provider_reference=refund.id,
            raw_status=refund.status,
            code=refund.failure_code,
            amount=amount,
        )

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Check ``x-callback-token`` and normalize an ``ewallet.capture`` callback.

        Raises:
            WebhookRejected: On a missing or wrong token, or a malformed body.
        """
        verify_callback_token(self.credentials.webhook_secret, headers)
        try:
            callback = t.callback_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise WebhookRejected("malformed") from None
        charge = callback.data
        result = charge_outcome(charge)
        # Xendit retries a callback with the same ``webhook-id`` header; without it, one charge
        # reaches each status once, so ``id:status`` is stable across retries too.
        webhook_id = next((v for k, v in headers.items() if k.lower() == "webhook-id"), "")
        metadata = charge.metadata or {}
        return [
            WebhookEvent(
                provider=self.name,
                event_id=webhook_id or f"{charge.id}:{charge.status}",
                event_type=callback.event,
                provider_reference=charge.id,
                outcome=result.outcome,
                payment_id=metadata.get("payment_id"),
                amount=result.amount,
                currency=charge.currency or None,
                code=result.code,
                raw_status=charge.status,
            )
        ]


def charge_outcome(charge: t.Charge) -> ProviderResult:
    """Classify one charge object (shared by create, get and callbacks)."""
    status = charge.status
    outcome = t.STATUS_MAP.get(status, Outcome.UNKNOWN)
    next_action = None
    if status == "FAILED":
        outcome = t.classify_failure(charge.failure_code)
    elif status == "PENDING" and charge.is_redirect_required and charge.actions:
        url = (
            charge.actions.get("desktop_web_checkout_url")
            or charge.actions.get("mobile_web_checkout_url")
            or charge.actions.get("mobile_deeplink_checkout_url")
        )
        if url:
            outcome = Outcome.REQUIRES_ACTION
            next_action = {
                "type": "redirect_to_url",
                "url": url,
                "mobile_url": charge.actions.get("mobile_web_checkout_url"),
                "deeplink_url": charge.actions.get("mobile_deeplink_checkout_url"),
            }
    return ProviderResult(
        outcome=outcome,
        provider_reference=charge.id,
        raw_status=status,
        code=charge.failure_code if status == "FAILED" else None,
        next_action=next_action,
        amount=t.from_xendit_amount(charge.charge_amount, charge.currency) if charge.currency else None,
    )
