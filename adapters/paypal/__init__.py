"""PayPal adapter: Orders v2 with ``intent=AUTHORIZE`` (or CAPTURE), Payments v2 modifications.

A card payment is one call: creating an order with ``payment_source.card`` already processes the
card (``intent=CAPTURE`` answers a COMPLETED order carrying the capture, ``AUTHORIZE`` one
carrying the authorization), so the adapter never calls the order's capture or authorize after it
(PayPal would answer 422 ``ORDER_ALREADY_CAPTURED``). Where such an "already done" answer can
still arrive, the order is retrieved and classified instead. A PayPal-wallet order waits for the
payer (``requires_action``).

The switch's ``provider_reference`` for PayPal is the order id: the authorization and capture ids
PayPal needs for modifications are read from the order (and remembered in memory to save the
round trip). Every POST carries ``PayPal-Request-Id`` derived from the switch's idempotency key
(at most 108 characters, per the Orders v2 spec), so a retried call replays PayPal's stored answer.

Webhooks: real PayPal signs with a certificate and is verified by calling PayPal's
verify-webhook-signature API, which needs the network. This adapter (and the simulator) use a
documented stand-in with the same inputs: ``PAYPAL-TRANSMISSION-SIG`` is base64
HMAC-SHA256, keyed with the webhook secret, of ``transmission_id|transmission_time|webhook_id|crc32(body)``,
and ``PAYPAL-AUTH-ALGO`` says ``HMAC-SHA256``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import msgspec

from adapters._http import HttpResponse, HttpTransport, NotSent, TransportError
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
    provider_key,
    transport_outcome,
    undecodable_outcome,
)
from adapters.paypal import transformers as t

DEFAULT_BASE_URL = "https://api-m.sandbox.paypal.com"
SIGNATURE_TOLERANCE_S = 300
_CACHE_SIZE = 10_000
# PayPal-Request-Id: 1 to 108 characters (Orders v2 and Payments v2 specs).
KEY_LIMIT = 108
# 422 issues saying the order was already processed: the answer is the order itself.
_ALREADY_DONE = frozenset({"ORDER_ALREADY_CAPTURED", "ORDER_ALREADY_AUTHORIZED", "ORDER_ALREADY_COMPLETED"})
_DECODE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def sign_webhook(secret: str, webhook_id: str, body: bytes, transmission_id: str, transmission_time: str) -> str:
    """Return the stand-in ``PAYPAL-TRANSMISSION-SIG`` for ``body`` (see the module docstring)."""
    message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}"
    return base64.b64encode(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()).decode()


class PayPalAdapter(ProviderAdapter):
    """PayPal Orders v2 with card payment sources, and PayPal-wallet redirects."""

    name = "paypal"
    flows = frozenset({Flow.AUTHORIZE, Flow.CAPTURE, Flow.VOID, Flow.REFUND, Flow.SYNC, Flow.WEBHOOK})
    method_types = frozenset({"card", "paypal"})

    def __init__(self, credentials: Credentials | None = None, *, total_timeout: float = 10.0) -> None:
        """Create the adapter.

        Args:
            credentials: ``account_id`` is the client id, ``api_key`` the client secret,
                ``webhook_secret`` the webhook signing secret, ``extra["webhook_id"]`` the id.
            total_timeout: Deadline in seconds for one call including retries.
        """
        super().__init__(credentials)
        self.http = HttpTransport(
            "paypal",
            self.credentials.base_url or DEFAULT_BASE_URL,
            total_timeout=total_timeout,
            idempotency_header="PayPal-Request-Id",
        )
        self._token: str | None = None
        self._token_expires = 0.0
        # order id -> {"authorizations": [...], "captures": [...]}, to skip a GET per modification.
        self._orders: OrderedDict[str, dict[str, list[str]]] = OrderedDict()

    async def close(self) -> None:
        """Release pooled connections."""
        await self.http.close()

    async def _auth_header(self) -> dict[str, str]:
        if self._token is None or time.monotonic() >= self._token_expires:
            basic = base64.b64encode(f"{self.credentials.account_id}:{self.credentials.api_key}".encode()).decode()
            try:
                response = await self.http.request(
                    "POST",
                    "/v1/oauth2/token",
                    form={"grant_type": "client_credentials"},
                    headers={"Authorization": f"Basic {basic}"},
                    retry_safe=True,  # asking for a token moves no money
                )
            except TransportError as exc:
                # Without a token the payment call was never made: nothing moved.
                raise NotSent(f"paypal: token request failed ({type(exc).__name__})") from None
            if response.status != 200:
                raise _AuthFailed(response)
            data = response.json()
            self._token = str(data["access_token"])
            # Renew a minute early so a token never expires mid-call.
            self._token_expires = time.monotonic() + max(0, int(data.get("expires_in", 3600)) - 60)
        return {"Authorization": f"Bearer {self._token}", "Prefer": "return=representation"}

    async def _call(self, method: str, path: str, body: Any = None, key: str | None = None) -> HttpResponse:
        headers = await self._auth_header()
        return await self.http.request(
            method, path, json=body, headers=headers, idempotency_key=provider_key(key, KEY_LIMIT) if key else None
        )

    def order_body(self, request: AuthorizeRequest) -> dict[str, Any]:
        """Build the ``order_request`` JSON.

        Raises:
            ValueError: When the amount is not representable or card data is missing.
        """
        unit: dict[str, Any] = {
            "reference_id": request.attempt_id,
            "custom_id": request.payment_id,
            "amount": t.money(request.amount, request.currency),
        }
        if request.reference:
            unit["invoice_id"] = request.reference
        body: dict[str, Any] = {
            "intent": "CAPTURE" if request.capture else "AUTHORIZE",
            "purchase_units": [unit],
        }
        if request.method_type == "paypal":
            body["payment_source"] = {
                "paypal": {
                    "experience_context": {
                        "return_url": request.return_url or "https://example.invalid/return",
                        "cancel_url": request.return_url or "https://example.invalid/cancel",
                        "user_action": "PAY_NOW",
                    }
                }
            }
            return body
        if request.card is None:
            raise ValueError("card payment without card data")
        card: dict[str, Any] = {
            "number": request.card.number,
            "expiry": f"{request.card.exp_year:04d}-{request.card.exp_month:02d}",
        }
        if request.card.cvc:
            card["security_code"] = request.card.cvc
        if request.card.holder_name:
            card["name"] = request.card.holder_name
        body["payment_source"] = {"card": card}
        return body

    async def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """Create the order; with a card that one call processes it, a wallet order waits for the payer."""
        try:
            body = self.order_body(request)
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        try:
            response = await self._call("POST", "/v2/checkout/orders", body, f"{request.idempotency_key}-order")
            if response.status not in (200, 201):
                return await self._error_or_order(response, None)
        except _AuthFailed as exc:
            return _token_refused(exc)
        except TransportError as exc:
            return transport_outcome(exc)
        try:
            order = msgspec.json.decode(response.body)
            order_id = order.get("id")
            if order.get("status") == "PAYER_ACTION_REQUIRED" or request.method_type == "paypal":
                link = next(
                    (li["href"] for li in order.get("links", []) if li.get("rel") in {"payer-action", "approve"}), None
                )
                return ProviderResult(
                    outcome=Outcome.REQUIRES_ACTION,
                    provider_reference=order_id,
                    raw_status=order.get("status"),
                    next_action={"type": "redirect_to_url", "url": link},
                )
            return self.order_outcome(order, request.currency)
        except (msgspec.DecodeError, *_DECODE_ERRORS):
            # A 2xx we cannot read: PayPal may have charged the card.
            return undecodable_outcome(response.status)

    async def _error_or_order(self, response: HttpResponse, order_id: str | None) -> ProviderResult:
        """Classify an error answer; an "already captured/authorized" one by reading the order."""
        result = _error_result(response)
        if result.code in _ALREADY_DONE and order_id:
            return await self._read_order(order_id)
        if result.code in _ALREADY_DONE:
            result.outcome = Outcome.UNKNOWN
        result.provider_reference = result.provider_reference or order_id
        return result

    async def _read_order(self, order_id: str) -> ProviderResult:
        try:
            response = await self._call("GET", f"/v2/checkout/orders/{order_id}")
        except _AuthFailed as exc:
            return lookup_failed(exc.response.status, order_id)
        except TransportError as exc:
            result = transport_outcome(exc)
            result.outcome = Outcome.UNKNOWN  # a look-up that failed proves nothing
            result.provider_reference = order_id
            return result
        if response.status != 200:
            return lookup_failed(response.status, order_id)
        try:
            return self.order_outcome(msgspec.json.decode(response.body), "")
        except (msgspec.DecodeError, *_DECODE_ERRORS):
            return undecodable_outcome(response.status, order_id)

    def order_outcome(self, order: dict[str, Any], currency: str) -> ProviderResult:
        """Classify an order by its latest authorization or capture (also used by sync)."""
        order_id = order.get("id")
        payments = (order.get("purchase_units") or [{}])[0].get("payments") or {}
        authorizations = payments.get("authorizations") or []
        captures = payments.get("captures") or []
        self._remember(order_id, authorizations, captures)
        if captures:
            item, status_map = captures[-1], t.CAPTURE_STATUS_MAP
        elif authorizations:
            item, status_map = authorizations[-1], t.AUTHORIZATION_STATUS_MAP
        else:
            status = order.get("status", "")
            return ProviderResult(
                outcome=t.ORDER_STATUS_MAP.get(status, Outcome.UNKNOWN), provider_reference=order_id, raw_status=status
            )
        status = item.get("status", "")
        code = (item.get("processor_response") or {}).get("response_code")
        outcome = status_map.get(status, Outcome.UNKNOWN)
        if outcome in (Outcome.DECLINED_HARD, Outcome.TECHNICAL) and code:
            outcome = t.PROCESSOR_RESPONSE_MAP.get(code, Outcome.DECLINED_HARD)
        amount = item.get("amount")
        return ProviderResult(
            outcome=outcome,
            provider_reference=order_id,
            raw_status=status,
            code=code if code != "0000" else None,
            amount=t.from_paypal_value(amount["value"], amount["currency_code"]) if amount else None,
        )

    def _remember(
        self, order_id: str | None, authorizations: list[dict[str, Any]], captures: list[dict[str, Any]]
    ) -> None:
        if not order_id:
            return
        self._orders[order_id] = {
            "authorizations": [a["id"] for a in authorizations if "id" in a],
            "captures": [c["id"] for c in captures if "id" in c],
        }
        self._orders.move_to_end(order_id)
        while len(self._orders) > _CACHE_SIZE:
            self._orders.popitem(last=False)

    async def _fetch_order(self, order_id: str) -> dict[str, Any] | ProviderResult:
        """GET the order; a failure comes back as an ``unknown`` result (a look-up proves nothing)."""
        try:
            response = await self._call("GET", f"/v2/checkout/orders/{order_id}")
        except _AuthFailed as exc:
            return lookup_failed(exc.response.status, order_id)
        except TransportError as exc:
            return ProviderResult(
                outcome=Outcome.UNKNOWN, provider_reference=order_id, raw_status="timeout", message=str(exc)
            )
        if response.status != 200:
            return lookup_failed(response.status, order_id)
        try:
            order = msgspec.json.decode(response.body)
            if not isinstance(order, dict):
                raise TypeError
        except (msgspec.DecodeError, TypeError):
            return undecodable_outcome(response.status, order_id)
        return order

    async def _ids(self, order_id: str, kind: str) -> list[str] | ProviderResult:
        known = self._orders.get(order_id, {}).get(kind)
        if known:
            return known
        order = await self._fetch_order(order_id)
        if isinstance(order, ProviderResult):
            # The modification itself was never sent: nothing happened.
            return ProviderResult(
                outcome=Outcome.TECHNICAL,
                provider_reference=order_id,
                raw_status="lookup_failed",
                code=order.raw_status,
            )
        try:
            self.order_outcome(order, "")
        except _DECODE_ERRORS:
            return ProviderResult(outcome=Outcome.TECHNICAL, provider_reference=order_id, raw_status="lookup_failed")
        return self._orders.get(order_id, {}).get(kind, [])

    async def capture(self, request: CaptureRequest) -> ProviderResult:
        """Capture the order's authorization (``POST /v2/payments/authorizations/{id}/capture``)."""
        try:
            body = {"amount": t.money(request.amount, request.currency), "final_capture": request.final}
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        try:
            ids = await self._ids(request.provider_reference, "authorizations")
            if isinstance(ids, ProviderResult):
                return ids
            if not ids:
                return ProviderResult(
                    outcome=Outcome.DECLINED_HARD,
                    raw_status="no_authorization",
                    provider_reference=request.provider_reference,
                )
            response = await self._call(
                "POST", f"/v2/payments/authorizations/{ids[-1]}/capture", body, request.idempotency_key
            )
        except _AuthFailed as exc:
            return _token_refused(exc)
        except TransportError as exc:
            return transport_outcome(exc)
        if response.status not in (200, 201):
            return _error_result(response)
        try:
            capture = msgspec.json.decode(response.body)
            result = _item_result(capture, t.CAPTURE_STATUS_MAP, request.provider_reference)
        except (msgspec.DecodeError, *_DECODE_ERRORS):
            return undecodable_outcome(response.status, request.provider_reference)
        entry = self._orders.setdefault(request.provider_reference, {"authorizations": ids, "captures": []})
        if capture.get("id"):
            entry["captures"].append(capture["id"])
        return result

    async def void(self, request: VoidRequest) -> ProviderResult:
        """Void the order's authorization."""
        try:
            ids = await self._ids(request.provider_reference, "authorizations")
            if isinstance(ids, ProviderResult):
                return ids
            if not ids:
                return ProviderResult(outcome=Outcome.DECLINED_HARD, raw_status="no_authorization")
            response = await self._call(
                "POST", f"/v2/payments/authorizations/{ids[-1]}/void", None, request.idempotency_key
            )
        except _AuthFailed as exc:
            return _token_refused(exc)
        except TransportError as exc:
            return transport_outcome(exc)
        if response.status == 204:
            return ProviderResult(
                outcome=Outcome.APPROVED, provider_reference=request.provider_reference, raw_status="VOIDED"
            )
        if response.status not in (200, 201):
            return _error_result(response)
        try:
            return _item_result(
                msgspec.json.decode(response.body), t.AUTHORIZATION_STATUS_MAP, request.provider_reference
            )
        except (msgspec.DecodeError, *_DECODE_ERRORS):
            return undecodable_outcome(response.status, request.provider_reference)

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """Refund the order's latest capture (``POST /v2/payments/captures/{id}/refund``)."""
        try:
            body = {"amount": t.money(request.amount, request.currency), "custom_id": request.refund_id}
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        try:
            ids = await self._ids(request.provider_reference, "captures")
            if isinstance(ids, ProviderResult):
                return ids
            if not ids:
                return ProviderResult(outcome=Outcome.DECLINED_HARD, raw_status="no_capture")
            response = await self._call(
                "POST", f"/v2/payments/captures/{ids[-1]}/refund", body, request.idempotency_key
            )
        except _AuthFailed as exc:
            return _token_refused(exc)
        except TransportError as exc:
            return transport_outcome(exc)
        if response.status not in (200, 201):
            return _error_result(response)
        try:
            return _item_result(msgspec.json.decode(response.body), t.REFUND_STATUS_MAP, None)
        except (msgspec.DecodeError, *_DECODE_ERRORS):
            return undecodable_outcome(response.status)

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """Read the order (``GET /v2/checkout/orders/{id}``) and classify the operation asked about.

        ``authorize``: the order's latest capture or authorization. ``void``: the authorization's
        status. ``capture``: a capture of ``request.amount`` on the order. ``refund``: a refund
        whose ``custom_id`` is ``request.operation_id``. What the order does not show stays
        ``unknown`` (the switch replays the request with the same PayPal-Request-Id).
        """
        if not request.provider_reference:
            # PayPal cannot search orders by our reference; without the order id nothing to read.
            return ProviderResult(outcome=Outcome.UNKNOWN, raw_status="no_reference")
        order = await self._fetch_order(request.provider_reference)
        if isinstance(order, ProviderResult):
            return order
        try:
            if request.operation == "authorize":
                return self.order_outcome(order, "")
            return _modification_outcome(order, request)
        except (msgspec.DecodeError, *_DECODE_ERRORS):
            return undecodable_outcome(200, request.provider_reference)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify the stand-in HMAC transmission signature and normalize the event.

        Raises:
            WebhookRejected: On a missing, forged or stale signature, or a malformed body.
        """
        h = {k.lower(): v for k, v in headers.items()}
        tid, ttime, sig = (
            h.get("paypal-transmission-id"),
            h.get("paypal-transmission-time"),
            h.get("paypal-transmission-sig"),
        )
        if not tid or not ttime or not sig:
            raise WebhookRejected("missing_signature")
        expected = sign_webhook(
            self.credentials.webhook_secret, self.credentials.extra.get("webhook_id", ""), body, tid, ttime
        )
        if not hmac.compare_digest(expected, sig):
            raise WebhookRejected("bad_signature")
        try:
            sent = dt.datetime.fromisoformat(ttime.replace("Z", "+00:00"))
        except ValueError:
            raise WebhookRejected("malformed") from None
        if abs(time.time() - sent.timestamp()) > SIGNATURE_TOLERANCE_S:
            raise WebhookRejected("stale")
        try:
            event = msgspec.json.decode(body)
            event_id, event_type, resource = event["id"], event["event_type"], event.get("resource") or {}
        except (msgspec.DecodeError, KeyError, TypeError):
            raise WebhookRejected("malformed") from None
        amount = resource.get("amount") or {}
        code = (resource.get("processor_response") or {}).get("response_code")
        outcome = t.EVENT_MAP.get(event_type, Outcome.UNKNOWN)
        if outcome is Outcome.DECLINED_HARD and code:
            outcome = t.PROCESSOR_RESPONSE_MAP.get(code, Outcome.DECLINED_HARD)
        related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
        return [
            WebhookEvent(
                provider=self.name,
                event_id=event_id,
                event_type=event_type,
                provider_reference=related.get("order_id") or resource.get("id"),
                outcome=outcome,
                payment_id=resource.get("custom_id"),
                amount=t.from_paypal_value(amount["value"], amount["currency_code"]) if amount else None,
                currency=amount.get("currency_code"),
                code=code if code != "0000" else None,
                raw_status=resource.get("status"),
            )
        ]


class _AuthFailed(Exception):
    def __init__(self, response: HttpResponse) -> None:
        super().__init__(f"paypal token request failed with HTTP {response.status}")
        self.response = response


def _item_result(item: dict[str, Any], status_map: dict[str, Outcome], order_id: str | None) -> ProviderResult:
    status = item.get("status", "")
    amount = item.get("amount")
    return ProviderResult(
        outcome=status_map.get(status, Outcome.UNKNOWN),
        provider_reference=order_id or item.get("id"),
        raw_status=status,
        amount=t.from_paypal_value(amount["value"], amount["currency_code"]) if amount else None,
    )


def _token_refused(exc: _AuthFailed) -> ProviderResult:
    # The token call failed, so the payment call was never made: nothing happened, whatever
    # status the token endpoint answered.
    return ProviderResult(
        outcome=Outcome.TECHNICAL, raw_status="token_refused", code=f"http_{exc.response.status}", message=str(exc)
    )


def _modification_outcome(order: dict[str, Any], request: SyncRequest) -> ProviderResult:
    payments = (order.get("purchase_units") or [{}])[0].get("payments") or {}
    reference = request.provider_reference
    if request.operation == "void":
        authorizations = payments.get("authorizations") or []
        status = authorizations[-1].get("status", "") if authorizations else ""
        if status == "VOIDED":
            return ProviderResult(outcome=Outcome.APPROVED, provider_reference=reference, raw_status=status)
        if status in {"CAPTURED", "PARTIALLY_CAPTURED"}:
            # PayPal's own state: a captured authorization can no longer be voided.
            return ProviderResult(outcome=Outcome.DECLINED_HARD, provider_reference=reference, raw_status=status)
        return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=reference, raw_status=status or None)
    kind, status_map = (
        ("captures", t.CAPTURE_STATUS_MAP) if request.operation == "capture" else ("refunds", t.REFUND_STATUS_MAP)
    )
    for item in reversed(payments.get(kind) or []):
        amount = item.get("amount")
        if request.operation == "refund":
            matches = bool(request.operation_id) and item.get("custom_id") == request.operation_id
        else:
            matches = (
                request.amount is not None
                and amount is not None
                and t.from_paypal_value(amount["value"], amount["currency_code"]) == request.amount
            )
        if matches:
            return _item_result(item, status_map, reference if request.operation == "capture" else None)
    return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=reference, raw_status="not_found")


def _error_result(response: HttpResponse) -> ProviderResult:
    if response.status == 429 or response.status >= 500:
        # 429 refuses before processing; a 5xx is ambiguous (PayPal may have processed).
        return ProviderResult(outcome=http_error_outcome(response.status), raw_status=f"http_{response.status}")
    data = response.json()
    details = data.get("details") or [] if isinstance(data, dict) else []
    issue = details[0].get("issue") if details else None
    if issue is None:
        return ProviderResult(
            outcome=http_error_outcome(response.status),
            raw_status=f"http_{response.status}",
            code=data.get("name") if isinstance(data, dict) else None,
        )
    return ProviderResult(
        # An issue we do not know is a refusal of our request (4xx): nothing was processed.
        outcome=t.ISSUE_MAP.get(issue, http_error_outcome(response.status)),
        raw_status=data.get("name"),
        code=issue,
        message=details[0].get("description"),
    )
