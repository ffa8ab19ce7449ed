"""Stripe PaymentIntents adapter: cards and konbini vouchers.

Calls are form-encoded with an ``Idempotency-Key``; every PaymentIntent carries the switch's
payment and attempt ids in ``metadata`` so that :meth:`StripeAdapter.sync` can find an attempt
whose answer was lost. Webhooks are verified with ``Stripe-Signature`` (``t=..,v1=..``:
HMAC-SHA256 of ``"{t}.{body}"`` with the endpoint secret) within a five-minute tolerance.
"""

from __future__ import annotations

import contextlib
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
    lookup_failed,
    not_found_outcome,
    provider_key,
    transport_outcome,
    undecodable_outcome,
)
from adapters.stripe import transformers as t

DEFAULT_BASE_URL = "https://api.stripe.com"
SIGNATURE_TOLERANCE_S = 300
KONBINI_MIN_JPY = 120
KONBINI_MAX_JPY = 300_000
# Stripe takes Idempotency-Key values of up to 255 characters (docs.stripe.com/api/idempotent_requests).
KEY_LIMIT = 255
# Stripe's search is eventually consistent: normally under a minute, up to an hour during
# incidents (docs.stripe.com/search#data-freshness), so "not found" is proof only after this.
SEARCH_CONSISTENCY_S = 3600.0
# Error codes and types that say an earlier request with this key exists, or is still running:
# the first request may have moved money, so the answer is unknown, never a refusal.
_IDEMPOTENCY_CONFLICTS = frozenset({"idempotency_key_in_use"})

_intent = msgspec.json.Decoder(t.PaymentIntent)
_refund = msgspec.json.Decoder(t.Refund)
_error = msgspec.json.Decoder(t.StripeErrorEnvelope)
_search = msgspec.json.Decoder(t.SearchResult)
_refund_list = msgspec.json.Decoder(t.RefundList)
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError)
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

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        total_timeout: float = 10.0,
        consistency_window_s: float = SEARCH_CONSISTENCY_S,
    ) -> None:
        """Create the adapter.

        Args:
            credentials: ``api_key`` is the secret key, ``webhook_secret`` the endpoint secret.
            total_timeout: Deadline in seconds for one call including retries.
            consistency_window_s: How long Stripe's search may lag behind its writes; a search
                that finds nothing is proof that nothing was authorized only after this.
        """
        super().__init__(credentials)
        self.consistency_window_s = consistency_window_s
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
        return await self.http.request(
            "POST", path, form=form, idempotency_key=provider_key(key, KEY_LIMIT) if key else None
        )

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
            return self.intent_outcome(intent, currency)
        except _DECODE_ERRORS:
            # A 2xx we cannot read: Stripe may have acted on it.
            return undecodable_outcome(response.status)

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
            # 429 refuses before processing; a 500 is indeterminate at Stripe (and stored under
            # the key, so a replay repeats it): look the object up instead.
            return ProviderResult(outcome=http_error_outcome(response.status), raw_status=f"http_{response.status}")
        try:
            error = _error.decode(response.body).error
        except (msgspec.DecodeError, msgspec.ValidationError):
            return ProviderResult(outcome=http_error_outcome(response.status), raw_status=f"http_{response.status}")
        reference = (error.payment_intent or {}).get("id") if isinstance(error.payment_intent, dict) else None
        if response.status == 409 or error.type == "idempotency_error" or error.code in _IDEMPOTENCY_CONFLICTS:
            # The key is in use by a request still running (409), or was used with other
            # parameters: the first request may have moved money.
            return ProviderResult(
                outcome=Outcome.UNKNOWN,
                provider_reference=reference,
                raw_status=error.type,
                code=error.code or error.type,
                message=error.message,
            )
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
        try:
            form = [("amount_to_capture", str(t.to_stripe_amount(request.amount, request.currency)))]
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
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
        """Refund part or all of a captured PaymentIntent (``metadata[refund_id]`` lets sync find it)."""
        try:
            form = [
                ("payment_intent", request.provider_reference),
                ("amount", str(t.to_stripe_amount(request.amount, request.currency))),
                ("metadata[refund_id]", request.refund_id),
                ("metadata[payment_id]", request.payment_id),
            ]
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        try:
            response = await self._post("/v1/refunds", form, request.idempotency_key)
        except TransportError as exc:
            return transport_outcome(exc)
        if response.status >= 400:
            return self._error_result(response, request.currency)
        try:
            return _refund_result(_refund.decode(response.body), request.currency)
        except _DECODE_ERRORS:
            return undecodable_outcome(response.status)

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """Resolve an operation whose answer was lost.

        ``authorize``: retrieve the PaymentIntent by id, or search it by the attempt id in its
        metadata (eventually consistent: nothing found is ``unknown`` until
        ``consistency_window_s`` has passed since ``request.attempted_at``). ``capture`` and
        ``void``: retrieve the PaymentIntent and read its status. ``refund``: list the
        PaymentIntent's refunds and match ``metadata[refund_id]``. A failed look-up is
        ``unknown``, never ``technical``.
        """
        try:
            if request.operation == "refund":
                return await self._sync_refund(request)
            if request.operation in {"capture", "void"}:
                return await self._sync_modification(request)
            if request.provider_reference:
                response = await self.http.request("GET", f"/v1/payment_intents/{request.provider_reference}")
                if response.status >= 300:
                    return self._lookup_error(response, request.provider_reference)
                intent = _intent.decode(response.body)
            else:
                from urllib.parse import quote

                query = quote(f"metadata['attempt_id']:'{request.attempt_id}'")
                response = await self.http.request("GET", f"/v1/payment_intents/search?query={query}")
                if response.status >= 300:
                    return self._lookup_error(response, None)
                found = _search.decode(response.body).data
                if not found:
                    return not_found_outcome(request, self.consistency_window_s)
                intent = found[0]
            return self.intent_outcome(intent, intent.currency)
        except TransportError as exc:
            return transport_outcome(exc)
        except _DECODE_ERRORS:
            return ProviderResult(
                outcome=Outcome.UNKNOWN, provider_reference=request.provider_reference, raw_status="unreadable"
            )

    def _lookup_error(self, response: HttpResponse, reference: str | None) -> ProviderResult:
        code = None
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            code = _error.decode(response.body).error.code
        return lookup_failed(response.status, reference, code)

    async def _retrieve(self, reference: str) -> t.PaymentIntent | ProviderResult:
        response = await self.http.request("GET", f"/v1/payment_intents/{reference}")
        if response.status >= 300:
            return self._lookup_error(response, reference)
        return _intent.decode(response.body)

    async def _sync_modification(self, request: SyncRequest) -> ProviderResult:
        if not request.provider_reference:
            return ProviderResult(outcome=Outcome.UNKNOWN, raw_status="no_reference")
        intent = await self._retrieve(request.provider_reference)
        if isinstance(intent, ProviderResult):
            return intent
        currency = request.currency or intent.currency
        done = "succeeded" if request.operation == "capture" else "canceled"
        never = "canceled" if request.operation == "capture" else "succeeded"
        if intent.status == done and (request.operation == "void" or intent.amount_received > 0):
            amount = intent.amount_received if request.operation == "capture" else intent.amount
            return ProviderResult(
                outcome=Outcome.APPROVED,
                provider_reference=intent.id,
                raw_status=intent.status,
                amount=t.from_stripe_amount(amount, currency),
            )
        if intent.status == never:
            # Stripe's own state says the operation cannot have happened (a captured intent
            # cannot be cancelled, a cancelled one cannot be captured).
            return ProviderResult(
                outcome=Outcome.DECLINED_HARD,
                provider_reference=intent.id,
                raw_status=intent.status,
                code="payment_intent_unexpected_state",
            )
        if request.operation == "capture" and request.expected_total is not None:
            received = t.from_stripe_amount(intent.amount_received, currency)
            if received >= request.expected_total:
                # A partial capture that keeps the rest open leaves the intent requires_capture.
                return ProviderResult(
                    outcome=Outcome.APPROVED, provider_reference=intent.id, raw_status=intent.status, amount=received
                )
            # Retrieval is consistent, but a stalled request may still be running: only once the
            # window has passed does "not captured" prove the capture never happened.
            missing = not_found_outcome(request, self.consistency_window_s)
            return msgspec.structs.replace(missing, provider_reference=intent.id, raw_status=intent.status)
        # Still requires_capture: the request may not have arrived or may still be running;
        # replaying it with the same key is what resolves it.
        return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=intent.id, raw_status=intent.status)

    async def _sync_refund(self, request: SyncRequest) -> ProviderResult:
        if not request.provider_reference:
            return ProviderResult(outcome=Outcome.UNKNOWN, raw_status="no_reference")
        from urllib.parse import quote

        response = await self.http.request(
            "GET", f"/v1/refunds?payment_intent={quote(request.provider_reference)}&limit=100"
        )
        if response.status >= 300:
            return self._lookup_error(response, request.provider_reference)
        listing = _refund_list.decode(response.body)
        wanted = request.operation_id or ""
        for refund in listing.data:
            if refund.metadata.get("refund_id") == wanted:
                return _refund_result(refund, request.currency or refund.currency)
        if listing.has_more:
            # More than a hundred refunds: not finding it on this page proves nothing.
            return ProviderResult(outcome=Outcome.UNKNOWN, raw_status="not_found", code="not_found_yet")
        return not_found_outcome(request, self.consistency_window_s)

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


def _refund_result(refund: t.Refund, currency: str) -> ProviderResult:
    return ProviderResult(
        outcome=t.REFUND_STATUS_MAP.get(refund.status, Outcome.UNKNOWN),
        provider_reference=refund.id,
        raw_status=refund.status,
        code=refund.failure_reason,
        amount=t.from_stripe_amount(refund.amount, currency or refund.currency),
    )


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
