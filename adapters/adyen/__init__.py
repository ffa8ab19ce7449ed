"""Adyen Checkout v71 adapter: ``/payments`` and the capture, cancel and refund modifications.

Requests are JSON with ``X-API-Key`` and ``Idempotency-Key``. Adyen's Checkout API has no
status call, so :class:`AdyenAdapter` does not declare ``sync``: an unknown outcome is resolved by
replaying the same request with the same idempotency key (Adyen answers the stored result) or by
the ``AUTHORISATION`` notification. Notifications are verified with Adyen's HMAC scheme:
HMAC-SHA256, keyed with the hex-decoded HMAC key, over the colon-joined
``pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import msgspec

from adapters._http import HttpResponse, HttpTransport, TransportError
from adapters.adyen import transformers as t
from adapters.base import (
    AuthorizeRequest,
    CaptureRequest,
    Credentials,
    Flow,
    Outcome,
    ProviderAdapter,
    ProviderResult,
    RefundRequest,
    VoidRequest,
    WebhookEvent,
    WebhookRejected,
    http_error_outcome,
    provider_key,
    transport_outcome,
    undecodable_outcome,
)

DEFAULT_BASE_URL = "https://checkout-test.adyen.com"
DEFAULT_RETURN_URL = "https://example.invalid/return"
# Adyen takes idempotency keys of up to 64 characters (docs.adyen.com/development-resources/api-idempotency).
KEY_LIMIT = 64
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError)

_payment = msgspec.json.Decoder(t.PaymentResponse)
_modification = msgspec.json.Decoder(t.ModificationResponse)
_service_error = msgspec.json.Decoder(t.ServiceError)
_notification = msgspec.json.Decoder(t.Notification)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def signing_string(item: Mapping[str, Any]) -> str:
    """Return the string Adyen signs for one ``NotificationRequestItem`` (raw JSON field names)."""
    amount = item.get("amount") or {}
    fields = [
        item.get("pspReference", ""),
        item.get("originalReference", ""),
        item.get("merchantAccountCode", ""),
        item.get("merchantReference", ""),
        str(amount.get("value", "")),
        amount.get("currency", ""),
        item.get("eventCode", ""),
        item.get("success", ""),
    ]
    return ":".join(_escape(str(f or "")) for f in fields)


def hmac_signature(hex_key: str, item: Mapping[str, Any]) -> str:
    """Compute ``additionalData.hmacSignature`` for a notification item, as Adyen does.

    Raises:
        ValueError: When the key is not hexadecimal.
    """
    key = binascii.unhexlify(hex_key)
    mac = hmac.new(key, signing_string(item).encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class AdyenAdapter(ProviderAdapter):
    """Adyen Checkout: cards (``scheme``) and SEPA direct debit (``sepadirectdebit``)."""

    name = "adyen"
    flows = frozenset({Flow.AUTHORIZE, Flow.CAPTURE, Flow.VOID, Flow.REFUND, Flow.WEBHOOK})
    method_types = frozenset({"card", "sepa_debit"})

    def __init__(self, credentials: Credentials | None = None, *, total_timeout: float = 10.0) -> None:
        """Create the adapter.

        Args:
            credentials: ``api_key`` is the X-API-Key, ``account_id`` the merchant account,
                ``webhook_secret`` the hex HMAC key.
            total_timeout: Deadline in seconds for one call including retries.
        """
        super().__init__(credentials)
        base = (self.credentials.base_url or DEFAULT_BASE_URL).rstrip("/") + f"/{t.API_VERSION}"
        self.http = HttpTransport(
            "adyen",
            base,
            total_timeout=total_timeout,
            idempotency_header="Idempotency-Key",
            default_headers={"X-API-Key": self.credentials.api_key},
        )

    async def close(self) -> None:
        """Release pooled connections."""
        await self.http.close()

    def payment_body(self, request: AuthorizeRequest) -> dict[str, Any]:
        """Build the ``PaymentRequest`` JSON for ``/payments``.

        Raises:
            ValueError: For a method this adapter does not speak or missing card data.
        """
        body: dict[str, Any] = {
            "amount": t.to_adyen_amount(request.amount, request.currency),
            "reference": request.attempt_id,
            "merchantAccount": self.credentials.account_id,
            "returnUrl": request.return_url or DEFAULT_RETURN_URL,
            "shopperInteraction": "Ecommerce",
            "merchantOrderReference": request.payment_id,
            "metadata": {"payment_id": request.payment_id},
        }
        if request.customer_email:
            body["shopperEmail"] = request.customer_email
        if request.customer_ip:
            body["shopperIP"] = request.customer_ip
        if request.customer_country:
            body["countryCode"] = request.customer_country
        if request.method_type == "sepa_debit":
            body["paymentMethod"] = {
                "type": "sepadirectdebit",
                "sepa.ownerName": request.customer_name or request.details.get("owner_name", ""),
                "sepa.ibanNumber": request.details.get("iban", ""),
            }
            return body
        if request.method_type != "card" or request.card is None:
            raise ValueError(f"adyen adapter cannot pay with {request.method_type!r}")
        card = request.card
        method: dict[str, Any] = {
            "type": "scheme",
            "number": card.number,
            "expiryMonth": f"{card.exp_month:02d}",
            "expiryYear": str(card.exp_year),
        }
        if card.cvc:
            method["cvc"] = card.cvc
        if card.holder_name:
            method["holderName"] = card.holder_name
        body["paymentMethod"] = method
        if not request.capture:
            # Per-request manual capture, whatever the account's capture delay is.
            body["additionalData"] = {"manualCapture": "true"}
        return body

    async def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """``POST /payments``."""
        try:
            body = self.payment_body(request)
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        try:
            response = await self.http.request(
                "POST", "/payments", json=body, idempotency_key=provider_key(request.idempotency_key, KEY_LIMIT)
            )
        except TransportError as exc:
            return transport_outcome(exc)
        if response.status != 200:
            return self._error_result(response)
        try:
            payment = _payment.decode(response.body)
            amount = t.from_adyen_amount(payment.amount)
        except _DECODE_ERRORS:
            # A 2xx we cannot read: Adyen may have authorised.
            return undecodable_outcome(response.status)
        return ProviderResult(
            outcome=t.classify_refusal(payment.result_code, payment.refusal_reason_code),
            provider_reference=payment.psp_reference,
            raw_status=payment.result_code,
            code=payment.refusal_reason_code,
            message=payment.refusal_reason,
            next_action=_next_action(payment.action),
            amount=request.amount if amount is None else amount,
        )

    @staticmethod
    def _error_result(response: HttpResponse) -> ProviderResult:
        if response.status == 429 or response.status >= 500:
            return ProviderResult(outcome=http_error_outcome(response.status), raw_status=f"http_{response.status}")
        try:
            error = _service_error.decode(response.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return ProviderResult(outcome=http_error_outcome(response.status), raw_status=f"http_{response.status}")
        if error.error_code in t.IN_PROGRESS_ERROR_CODES:
            return ProviderResult(
                outcome=Outcome.UNKNOWN,
                raw_status=f"http_{response.status}",
                code=error.error_code,
                message=error.message,
            )
        return ProviderResult(
            # A validation or configuration refusal of our request: nothing was processed.
            outcome=http_error_outcome(response.status),
            raw_status=f"http_{response.status}",
            code=error.error_code,
            message=error.message,
        )

    async def _modify(self, path: str, body: dict[str, Any], key: str) -> ProviderResult:
        try:
            response = await self.http.request("POST", path, json=body, idempotency_key=provider_key(key, KEY_LIMIT))
        except TransportError as exc:
            return transport_outcome(exc)
        if response.status not in (200, 201):
            return self._error_result(response)
        try:
            modification = _modification.decode(response.body)
            amount = t.from_adyen_amount(modification.amount)
        except _DECODE_ERRORS:
            return undecodable_outcome(response.status)
        return ProviderResult(
            outcome=t.MODIFICATION_STATUS_MAP.get(modification.status, Outcome.UNKNOWN),
            provider_reference=modification.psp_reference,
            raw_status=modification.status,
            amount=amount,
        )

    async def capture(self, request: CaptureRequest) -> ProviderResult:
        """``POST /payments/{pspReference}/captures``; the result arrives as a CAPTURE notification."""
        try:
            amount = t.to_adyen_amount(request.amount, request.currency)
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        body = {"merchantAccount": self.credentials.account_id, "amount": amount, "reference": request.payment_id}
        return await self._modify(f"/payments/{request.provider_reference}/captures", body, request.idempotency_key)

    async def void(self, request: VoidRequest) -> ProviderResult:
        """``POST /payments/{pspReference}/cancels``."""
        body = {"merchantAccount": self.credentials.account_id, "reference": request.payment_id}
        return await self._modify(f"/payments/{request.provider_reference}/cancels", body, request.idempotency_key)

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """``POST /payments/{pspReference}/refunds``."""
        try:
            amount = t.to_adyen_amount(request.amount, request.currency)
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        body = {"merchantAccount": self.credentials.account_id, "amount": amount, "reference": request.refund_id}
        return await self._modify(f"/payments/{request.provider_reference}/refunds", body, request.idempotency_key)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify every item's ``hmacSignature`` and normalize the batch.

        Raises:
            WebhookRejected: When any item is unsigned or forged, or the body is malformed.
        """
        try:
            raw = msgspec.json.decode(body)
            notification = _notification.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise WebhookRejected("malformed") from None
        events = []
        for raw_item, wrapper in zip(raw.get("notificationItems", []), notification.notification_items, strict=True):
            item = wrapper.item
            received = item.additional_data.get("hmacSignature", "")
            raw_fields = raw_item.get("NotificationRequestItem", {})
            try:
                expected = hmac_signature(self.credentials.webhook_secret, raw_fields)
            except (ValueError, binascii.Error):
                raise WebhookRejected("bad_key") from None
            if not received or not hmac.compare_digest(expected, received):
                raise WebhookRejected("bad_signature")
            success = item.success == "true"
            if success:
                outcome = t.EVENT_SUCCESS_MAP.get(item.event_code, Outcome.UNKNOWN)
            elif item.event_code == "AUTHORISATION":
                code = item.additional_data.get("refusalReasonCode")
                outcome = t.classify_refusal("Refused", code) if code else Outcome.DECLINED_HARD
            else:
                outcome = Outcome.DECLINED_HARD
            # Adyen has no notification id: the item's identity is what it reports.
            event_id = f"{item.event_code}:{item.psp_reference}:{item.original_reference or ''}:{item.success}"
            events.append(
                WebhookEvent(
                    provider=self.name,
                    event_id=event_id,
                    event_type=item.event_code,
                    provider_reference=item.original_reference or item.psp_reference,
                    outcome=outcome,
                    payment_id=None,
                    amount=_notified_amount(item.amount),
                    currency=item.amount.get("currency"),
                    code=item.additional_data.get("refusalReasonCode") or (item.reason if not success else None),
                    raw_status=item.success,
                )
            )
        return events


def _notified_amount(amount: dict[str, Any]) -> int | None:
    # A notification amount that does not convert is left out rather than guessed.
    try:
        return t.from_adyen_amount(amount)
    except ValueError:
        return None


def _next_action(action: dict[str, Any] | None) -> dict[str, Any] | None:
    if not action:
        return None
    if action.get("type") == "redirect":
        return {"type": "redirect_to_url", "url": action.get("url"), "method": action.get("method", "GET")}
    if action.get("type") == "voucher":
        return {"type": "voucher", "url": action.get("downloadUrl"), "reference": action.get("reference")}
    return {"type": str(action.get("type")), "provider_data": action}
