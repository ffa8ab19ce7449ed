"""PayPal adapter: Orders v2 with ``intent=AUTHORIZE`` (or CAPTURE), Payments v2 modifications.

The switch's ``provider_reference`` for PayPal is the order id: the authorization and capture ids
PayPal needs for modifications are read from the order (and remembered in memory to save the
round trip). Every POST carries ``PayPal-Request-Id`` derived from the switch's idempotency key,
one per step, so a retried step replays PayPal's stored answer.

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
    transport_outcome,
)
from adapters.paypal import transformers as t

DEFAULT_BASE_URL = "https://api-m.sandbox.paypal.com"
SIGNATURE_TOLERANCE_S = 300
_CACHE_SIZE = 10_000


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
        return await self.http.request(method, path, json=body, headers=headers, idempotency_key=key)

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
        """Create the order, then authorize (or capture) it; a wallet order waits for the payer."""
        try:
            body = self.order_body(request)
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        order_id: str | None = None
        try:
            response = await self._call("POST", "/v2/checkout/orders", body, f"{request.idempotency_key}-order")
            if response.status not in (200, 201):
                return _error_result(response)
            order = response.json()
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
            step = "capture" if request.capture else "authorize"
            response = await self._call(
                "POST", f"/v2/checkout/orders/{order_id}/{step}", {}, f"{request.idempotency_key}-{step}"
            )
        except _AuthFailed as exc:
            return _error_result(exc.response)
        except TransportError as exc:
            result = transport_outcome(exc)
            result.provider_reference = order_id
            return result
        if response.status not in (200, 201):
            result = _error_result(response)
            result.provider_reference = order_id
            return result
        return self.order_outcome(response.json(), request.currency)

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

    async def _ids(self, order_id: str, kind: str) -> list[str]:
        known = self._orders.get(order_id, {}).get(kind)
        if known:
            return known
        response = await self._call("GET", f"/v2/checkout/orders/{order_id}")
        if response.status == 200:
            self.order_outcome(response.json(), "")
        return self._orders.get(order_id, {}).get(kind, [])

    async def capture(self, request: CaptureRequest) -> ProviderResult:
        """Capture the order's authorization (``POST /v2/payments/authorizations/{id}/capture``)."""
        try:
            ids = await self._ids(request.provider_reference, "authorizations")
            if not ids:
                return ProviderResult(
                    outcome=Outcome.DECLINED_HARD,
                    raw_status="no_authorization",
                    provider_reference=request.provider_reference,
                )
            body = {"amount": t.money(request.amount, request.currency), "final_capture": request.final}
            response = await self._call(
                "POST", f"/v2/payments/authorizations/{ids[-1]}/capture", body, request.idempotency_key
            )
        except _AuthFailed as exc:
            return _error_result(exc.response)
        except TransportError as exc:
            return transport_outcome(exc)
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        if response.status not in (200, 201):
            return _error_result(response)
        capture = response.json()
        entry = self._orders.setdefault(request.provider_reference, {"authorizations": ids, "captures": []})
        entry["captures"].append(capture["id"])
        return _item_result(capture, t.CAPTURE_STATUS_MAP, request.provider_reference)

    async def void(self, request: VoidRequest) -> ProviderResult:
        """Void the order's authorization."""
        try:
            ids = await self._ids(request.provider_reference, "authorizations")
            if not ids:
                return ProviderResult(outcome=Outcome.DECLINED_HARD, raw_status="no_authorization")
            response = await self._call(
                "POST", f"/v2/payments/authorizations/{ids[-1]}/void", None, request.idempotency_key
            )
        except _AuthFailed as exc:
            return _error_result(exc.response)
        except TransportError as exc:
            return transport_outcome(exc)
        if response.status == 204:
            return ProviderResult(
                outcome=Outcome.APPROVED, provider_reference=request.provider_reference, raw_status="VOIDED"
            )
        if response.status not in (200, 201):
            return _error_result(response)
        return _item_result(response.json(), t.AUTHORIZATION_STATUS_MAP, request.provider_reference)

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """Refund the order's latest capture (``POST /v2/payments/captures/{id}/refund``)."""
        try:
            ids = await self._ids(request.provider_reference, "captures")
            if not ids:
                return ProviderResult(outcome=Outcome.DECLINED_HARD, raw_status="no_capture")
            body = {"amount": t.money(request.amount, request.currency), "custom_id": request.refund_id}
            response = await self._call(
                "POST", f"/v2/payments/captures/{ids[-1]}/refund", body, request.idempotency_key
            )
        except _AuthFailed as exc:
            return _error_result(exc.response)
        except TransportError as exc:
            return transport_outcome(exc)
        except ValueError as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        if response.status not in (200, 201):
            return _error_result(response)
        return _item_result(response.json(), t.REFUND_STATUS_MAP, None)

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """Read the order (``GET /v2/checkout/orders/{id}``)."""
        if not request.provider_reference:
            # PayPal cannot search orders by our reference; without the order id nothing to read.
            return ProviderResult(outcome=Outcome.UNKNOWN, raw_status="no_reference")
        try:
            response = await self._call("GET", f"/v2/checkout/orders/{request.provider_reference}")
        except _AuthFailed as exc:
            return _error_result(exc.response)
        except TransportError as exc:
            return transport_outcome(exc, money_may_move=False)
        if response.status != 200:
            return _error_result(response)
        return self.order_outcome(response.json(), "")

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


def _error_result(response: HttpResponse) -> ProviderResult:
    if response.status == 429 or response.status >= 500:
        return ProviderResult(outcome=Outcome.TECHNICAL, raw_status=f"http_{response.status}")
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
        outcome=t.ISSUE_MAP.get(issue, Outcome.TECHNICAL),
        raw_status=data.get("name"),
        code=issue,
        message=details[0].get("description"),
    )
