"""Stripe PaymentIntents adapter: cards and konbini vouchers.

Calls are form-encoded with an ``Idempotency-Key``; every PaymentIntent carries the switch's
payment and attempt ids in ``metadata`` so that :meth:`StripeAdapter.sync` can find an attempt
whose answer was lost. Webhooks are verified with ``Stripe-Signature`` (``t=..,v1=..``:
HMAC-SHA256 of ``"{t}.{body}"`` with the endpoint secret) within a five-minute tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from adapters._http import HttpResponse, HttpTransport, TransportError
from adapters.base import (
    AuthorizeRequest,
    CaptureRequest,
    Credentials,
    Flow,
    Outcome,
    ProviderAdapter,
    ProviderResult,
    RefundRequest,
    SyncRequest,
    VoidRequest,
    WebhookEvent,
    WebhookRejected,
    http_error_outcome,
    transport_outcome,
)
from adapters.stripe import transformers as t

DEFAULT_BASE_URL = "https://api.stripe.com"
SIGNATURE_TOLERANCE_S = 300
KONBINI_MIN_JPY = 120
KONBINI_MAX_JPY = 300_000

_intent = msgspec.json.Decoder(t.PaymentIntent)
_refund = msgspec.json.Decoder(t.Refund)
_error = msgspec.json.Decoder(t.StripeErrorEnvelope)
_search = msgspec.json.Decoder(t.SearchResult)
_event = msgspec.json.Decoder(t.Event)


def sign_webhook(secret: str, payload: bytes, timestamp: int | None = None) -> str:
    """Return a ``Stripe-Signature`` header value for ``payload``, as Stripe computes it."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify_signature(secret: str, payload: bytes, header: str, tolerance: int = SIGNATURE_TOLERANCE_S) -> None:
    """Check a ``Stripe-Signature`` header.

    Raises:
        WebhookRejected: ``malformed``, ``bad_signature`` or ``stale``.
    """
    pairs = [p.split("=", 1) for p in header.split(",") if "=" in p]
    timestamps = [v for k, v in pairs if k.strip() == "t"]
    signatures = [v for k, v in pairs if k.strip() == "v1"]
    if not timestamps or not signatures or not timestamps[0].isdigit():
        raise WebhookRejected("malformed")
    ts = int(timestamps[0])
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s.strip()) for s in signatures):
        raise WebhookRejected("bad_signature")
    if abs(time.time() - ts) > tolerance:
        raise WebhookRejected("stale")


class StripeAdapter(ProviderAdapter):
    """Stripe PaymentIntents: card (authorize/capture/void/refund/sync) and konbini vouchers."""

    name = "stripe"
    flows = frozenset({Flow.AUTHORIZE, Flow.CAPTURE, Flow.VOID, Flow.REFUND, Flow.SYNC, Flow.WEBHOOK})
    method_types = frozenset({"card", "konbini"})

    def __init__(self, credentials: Credentials | None = None, *, total_timeout: float = 10.0) -> None:
        """Create the adapter.

        Args:
            credentials: ``api_key`` is the secret key, ``webhook_secret`` the endpoint secret.
            total_timeout: Deadline in seconds for one call including retries.
        """
        super().__init__(credentials)
        api_key = self.credentials.api_key
        self.http = HttpTransport(
            "stripe",
            self.credentials.base_url or DEFAULT_BASE_URL,
            total_timeout=total_timeout,
            idempotency_header="Idempotency-Key",
            default_headers={"Authorization": f"Bearer {api_key}", "Stripe-Version": "2024-06-20"},
        )

    async def close(self) -> None:
        """Release pooled connections."""
        await self.http.close()

    async def _post(self, path: str, form: list[tuple[str, str]], key: str | None) -> HttpResponse:
        return await self.http.request("POST", path, form=form, idempotency_key=key)

    async def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """Create and confirm a PaymentIntent (card, or konbini voucher)."""
        try:
            form = self._intent_form(request)
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        try:
            response = await self._post("/v1/payment_intents", form, request.idempotency_key)
        except TransportError as exc:
            return transport_outcome(exc)
        return self._intent_result(response, request.currency)

    def _intent_form(self, request: AuthorizeRequest) -> list[tuple[str, str]]:
        currency = request.currency.upper()
        form: list[tuple[str, str]] = [
            ("amount", str(t.to_stripe_amount(request.amount, currency))),
            ("currency", currency.lower()),
            ("confirm", "true"),
            ("metadata[payment_id]", request.payment_id),
            ("metadata[attempt_id]", request.attempt_id),
        ]
        if request.reference:
            form.append(("description", request.reference))
        if request.method_type == "konbini":
            # Konbini: JPY only, 120-300,000 JPY, no manual capture (Stripe docs).
            if currency != "JPY":
                raise ValueError("konbini takes JPY only")
            if not KONBINI_MIN_JPY <= request.amount <= KONBINI_MAX_JPY:
                raise ValueError("konbini amount must be between 120 and 300000 JPY")
            form += [
                ("payment_method_types[]", "konbini"),
                ("payment_method_data[type]", "konbini"),
                ("payment_method_data[billing_details][email]", request.customer_email or ""),
                ("payment_method_data[billing_details][name]", request.customer_name or ""),
                ("payment_method_options[konbini][expires_after_days]", request.details.get("expires_after_days", "3")),
            ]
            if "product_description" in request.details:
                form.append(
                    (
                        "payment_method_options[konbini][product_description]",
                        request.details["product_description"][:22],
                    )
                )
            return form
        if request.card is None:
            raise ValueError("card payment without card data")
        card = request.card
        form += [
            ("capture_method", "automatic" if request.capture else "manual"),
            ("payment_method_types[]", "card"),
            ("payment_method_data[type]", "card"),
            ("payment_method_data[card][number]", card.number),
            ("payment_method_data[card][exp_month]", str(card.exp_month)),
            ("payment_method_data[card][exp_year]", str(card.exp_year)),
        ]
        if card.cvc:
            form.append(("payment_method_data[card][cvc]", card.cvc))
        if card.holder_name:
            form.append(("payment_method_data[billing_details][name]", card.holder_name))
        if request.return_url:
            form.append(("return_url", request.return_url))
        return form

    def _intent_result(self, response: HttpResponse, currency: str) -> ProviderResult:
        if response.status >= 400:
            return self._error_result(response, currency)
        try:
            intent = _intent.decode(response.body)
        except msgspec.DecodeError:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status=f"http_{response.status}")
        return self.intent_outcome(intent, currency)

    def intent_outcome(self, intent: t.PaymentIntent, currency: str) -> ProviderResult:
        """Classify a PaymentIntent (also used for sync and webhooks)."""
        outcome = t.STATUS_MAP.get(intent.status, Outcome.UNKNOWN)
        code = None
        if intent.status == "requires_payment_method" and intent.last_payment_error is not None:
            code = intent.last_payment_error.decline_code or intent.last_payment_error.code
            outcome = t.classify_decline(code)
        amount = intent.amount_received or intent.amount_capturable or intent.amount
        return ProviderResult(
            outcome=outcome,
            provider_reference=intent.id,
            raw_status=intent.status,
            code=code,
            next_action=_next_action(intent.next_action),
            amount=t.from_stripe_amount(amount, currency or intent.currency),
        )

    def _error_result(self, response: HttpResponse, currency: str) -> ProviderResult:
        if response.status == 429 or response.status >= 500:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status=f"http_{response.status}")
        try:
            error = _error.decode(response.body).error
        except (msgspec.DecodeError, msgspec.ValidationError):
            return ProviderResult(outcome=http_error_outcome(response.status), raw_status=f"http_{response.status}")
        reference = (error.payment_intent or {}).get("id")
        if error.type == "card_error":
            code = error.decline_code or error.code
            return ProviderResult(
                outcome=t.classify_decline(code),
                provider_reference=reference,
                raw_status="requires_payment_method",
                code=code,
                message=error.message,
            )
        # Our request was refused (bad parameters, idempotency, state): not the card's fault.
        return ProviderResult(
            outcome=Outcome.TECHNICAL,
            provider_reference=reference,
            raw_status=error.type,
            code=error.code,
            message=error.message,
        )

    async def capture(self, request: CaptureRequest) -> ProviderResult:
        """Capture all or part of a ``requires_capture`` PaymentIntent."""
        form = [("amount_to_capture", str(t.to_stripe_amount(request.amount, request.currency)))]
        if not request.final:
            # Multicapture: keep the rest of the authorization open for later shipments.
            form.append(("final_capture", "false"))
        try:
            response = await self._post(
                f"/v1/payment_intents/{request.provider_reference}/capture", form, request.idempotency_key
            )
        except TransportError as exc:
            return transport_outcome(exc)
        return self._intent_result(response, request.currency)

    async def void(self, request: VoidRequest) -> ProviderResult:
        """Cancel an uncaptured PaymentIntent."""
        try:
            response = await self._post(
                f"/v1/payment_intents/{request.provider_reference}/cancel", [], request.idempotency_key
            )
        except TransportError as exc:
            return transport_outcome(exc)
        return self._intent_result(response, request.currency)

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """Refund part or all of a captured PaymentIntent."""
        form = [
            ("payment_intent", request.provider_reference),
            ("amount", str(t.to_stripe_amount(request.amount, request.currency))),
            ("metadata[refund_id]", request.refund_id),
        ]
        try:
            response = await self._post("/v1/refunds", form, request.idempotency_key)
        except TransportError as exc:
            return transport_outcome(exc)
        if response.status >= 400:
            return self._error_result(response, request.currency)
        refund = _refund.decode(response.body)
        return ProviderResult(
            outcome=t.REFUND_STATUS_MAP.get(refund.status, Outcome.UNKNOWN),
            provider_reference=refund.id,
            raw_status=refund.status,
            code=refund.failure_reason,
            amount=t.from_stripe_amount(refund.amount, request.currency),
        )

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """Read a PaymentIntent, by id or (when the answer was lost) by the attempt id in metadata."""
        try:
            if request.provider_reference:
                response = await self.http.request("GET", f"/v1/payment_intents/{request.provider_reference}")
                if response.status >= 400:
                    return self._error_result(response, "")
                intent = _intent.decode(response.body)
            else:
                from urllib.parse import quote

                query = quote(f"metadata['attempt_id']:'{request.attempt_id}'")
                response = await self.http.request("GET", f"/v1/payment_intents/search?query={query}")
                if response.status >= 400:
                    return self._error_result(response, "")
                found = _search.decode(response.body).data
                if not found:
                    # Stripe never saw the attempt: nothing was authorized.
                    return ProviderResult(outcome=Outcome.DECLINED_SOFT, raw_status="not_found")
                intent = found[0]
        except TransportError as exc:
            return transport_outcome(exc, money_may_move=False)
        return self.intent_outcome(intent, intent.currency)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify ``Stripe-Signature`` and turn the Event into a WebhookEvent.

        Raises:
            WebhookRejected: On a missing, forged or stale signature, or a malformed body.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        header = lowered.get("stripe-signature")
        if not header:
            raise WebhookRejected("missing_signature")
        verify_signature(self.credentials.webhook_secret, body, header)
        try:
            event = _event.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise WebhookRejected("malformed") from None
        obj: dict[str, Any] = event.data.get("object", {})
        outcome = t.EVENT_MAP.get(event.type, Outcome.UNKNOWN)
        code = None
        error = obj.get("last_payment_error") or {}
        if event.type == "payment_intent.payment_failed":
            code = error.get("decline_code") or error.get("code")
            outcome = t.classify_decline(code)
        currency = str(obj.get("currency", "")).upper()
        reference = obj.get("id") if obj.get("object") == "payment_intent" else obj.get("payment_intent")
        amount = obj.get("amount_received") or obj.get("amount")
        return [
            WebhookEvent(
                provider=self.name,
                event_id=event.id,
                event_type=event.type,
                provider_reference=reference,
                outcome=outcome,
                payment_id=(obj.get("metadata") or {}).get("payment_id"),
                amount=t.from_stripe_amount(int(amount), currency) if amount is not None and currency else None,
                currency=currency or None,
                code=code,
                raw_status=obj.get("status"),
            )
        ]


def _next_action(action: dict[str, Any] | None) -> dict[str, Any] | None:
    if not action:
        return None
    kind = action.get("type")
    if kind == "redirect_to_url":
        return {"type": "redirect_to_url", "url": action.get("redirect_to_url", {}).get("url")}
    if kind == "konbini_display_details":
        details = action.get("konbini_display_details", {})
        return {
            "type": "voucher",
            "method": "konbini",
            "expires_at": details.get("expires_at"),
            "url": details.get("hosted_voucher_url"),
            "stores": details.get("stores", {}),
        }
    return {"type": str(kind), "provider_data": action}
