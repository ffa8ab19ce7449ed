"""GoPay through the Midtrans Core API: charge, status, cancel, refund, signed notifications.

Authentication is HTTP Basic with the server key. Notifications carry
``signature_key = SHA512(order_id + status_code + gross_amount + server_key)``. The order id is the
switch's attempt id and is the ``provider_reference`` (Midtrans's endpoints are keyed by it).
The signature does not cover ``transaction_status``, so Midtrans advises confirming a notification
with the status call: the switch should ``sync`` before acting on a final status.
"""

from __future__ import annotations

import base64
import hashlib
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
    VoidRequest,
    WebhookEvent,
    WebhookRejected,
    http_error_outcome,
    transport_outcome,
)
from adapters.midtrans import transformers as t

DEFAULT_BASE_URL = "https://api.sandbox.midtrans.com"


def signature_key(order_id: str, status_code: str, gross_amount: str, server_key: str) -> str:
    """Midtrans's notification signature: hex SHA-512 of the four fields concatenated."""
    return hashlib.sha512(f"{order_id}{status_code}{gross_amount}{server_key}".encode()).hexdigest()


class MidtransAdapter(ProviderAdapter):
    """GoPay via Midtrans: ``requires_action`` with a deeplink, completed by notification."""

    webhook_confirm_by_sync = True

    name = "midtrans"
    flows = frozenset({Flow.AUTHORIZE, Flow.VOID, Flow.REFUND, Flow.SYNC, Flow.WEBHOOK})
    method_types = frozenset({"wallet", "gopay"})

    def __init__(self, credentials: Credentials | None = None, *, total_timeout: float = 10.0) -> None:
        """Create the adapter; ``api_key`` is the server key."""
        super().__init__(credentials)
        basic = base64.b64encode(f"{self.credentials.api_key}:".encode()).decode()
        self.http = HttpTransport(
            "midtrans",
            self.credentials.base_url or DEFAULT_BASE_URL,
            total_timeout=total_timeout,
            idempotency_header=None,
            default_headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
        )

    async def close(self) -> None:
        """Release pooled connections."""
        await self.http.close()

    async def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """``POST /v2/charge`` with ``payment_type=gopay``."""
        try:
            gross = t.to_gross_amount(request.amount, request.currency)
        except t.AmountNotRepresentable as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        body: dict[str, Any] = {
            "payment_type": "gopay",
            "transaction_details": {"order_id": request.attempt_id, "gross_amount": gross},
            "custom_field1": request.payment_id,
            "gopay": {"enable_callback": bool(request.return_url), "callback_url": request.return_url or ""},
        }
        if request.customer_email:
            body["customer_details"] = {"email": request.customer_email}
        try:
            # Midtrans rejects a second charge for the same order_id, which makes the retry safe.
            response = await self.http.request("POST", "/v2/charge", json=body, retry_safe=True)
        except TransportError as exc:
            result = transport_outcome(exc)
            result.provider_reference = request.attempt_id
            return result
        return self._result(response, request.attempt_id)

    def _result(self, response: HttpResponse, order_id: str) -> ProviderResult:
        if response.status >= 500 or response.status == 429:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status=f"http_{response.status}")
        data = response.json()
        status = data.get("transaction_status")
        if not status:
            return ProviderResult(
                outcome=http_error_outcome(max(response.status, int(data.get("status_code", 0) or 0))),
                provider_reference=order_id,
                code=str(data.get("status_code")),
                message=data.get("status_message"),
            )
        outcome = t.STATUS_MAP.get(status, Outcome.UNKNOWN)
        actions = {a.get("name"): a.get("url") for a in data.get("actions", [])}
        next_action = None
        if status == "pending" and actions:
            outcome = Outcome.REQUIRES_ACTION
            next_action = {
                "type": "redirect_to_url",
                "url": actions.get("deeplink-redirect"),
                "qr_code_url": actions.get("generate-qr-code"),
            }
        return ProviderResult(
            outcome=outcome,
            provider_reference=data.get("order_id", order_id),
            raw_status=status,
            code=data.get("status_code") if outcome not in (Outcome.APPROVED, Outcome.PENDING) else None,
            next_action=next_action,
            amount=t.from_gross_amount(data["gross_amount"]) if "gross_amount" in data else None,
        )

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """``GET /v2/{order_id}/status``."""
        order_id = request.provider_reference or request.attempt_id
        try:
            response = await self.http.request("GET", f"/v2/{order_id}/status")
        except TransportError as exc:
            return transport_outcome(exc, money_may_move=False)
        return self._result(response, order_id)

    async def void(self, request: VoidRequest) -> ProviderResult:
        """``POST /v2/{order_id}/cancel`` (an unpaid GoPay charge)."""
        try:
            response = await self.http.request("POST", f"/v2/{request.provider_reference}/cancel", retry_safe=True)
        except TransportError as exc:
            return transport_outcome(exc)
        result = self._result(response, request.provider_reference)
        if result.raw_status == "cancel":
            result.outcome = Outcome.APPROVED  # the answer to our own cancel
        return result

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """``POST /v2/{order_id}/refund`` with ``refund_key`` as the idempotency key."""
        try:
            body = {
                "refund_key": request.idempotency_key,
                "amount": t.to_gross_amount(request.amount, request.currency),
                "reason": request.refund_id,
            }
            response = await self.http.request(
                "POST", f"/v2/{request.provider_reference}/refund", json=body, retry_safe=True
            )
        except t.AmountNotRepresentable as exc:
            return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="invalid_request", message=str(exc))
        except TransportError as exc:
            return transport_outcome(exc)
        return self._result(response, request.provider_reference)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify ``signature_key`` and normalize the notification.

        Raises:
            WebhookRejected: On a missing or forged signature or a malformed body.
        """
        try:
            data = msgspec.json.decode(body)
            order_id, status_code = str(data["order_id"]), str(data["status_code"])
            gross, received = str(data["gross_amount"]), str(data.get("signature_key", ""))
        except (msgspec.DecodeError, KeyError, TypeError):
            raise WebhookRejected("malformed") from None
        expected = signature_key(order_id, status_code, gross, self.credentials.api_key)
        if not received or not hmac.compare_digest(expected, received):
            raise WebhookRejected("bad_signature")
        status = str(data.get("transaction_status", ""))
        return [
            WebhookEvent(
                provider=self.name,
                # One transaction moves through several statuses; each status is one event.
                event_id=f"{data.get('transaction_id', order_id)}:{status}",
                event_type=status,
                provider_reference=order_id,
                outcome=t.STATUS_MAP.get(status, Outcome.UNKNOWN),
                payment_id=data.get("custom_field1"),
                amount=t.from_gross_amount(gross),
                currency=str(data.get("currency", "IDR")),
                code=status_code if status_code not in {"200", "201"} else None,
                raw_status=status,
            )
        ]
