"""GoPay through the Midtrans Core API: charge, status, cancel, refund, signed notifications.

Authentication is HTTP Basic with the server key. Notifications carry
``signature_key = SHA512(order_id + status_code + gross_amount + server_key)``. The order id is the
switch's attempt id and is the ``provider_reference`` (Midtrans's endpoints are keyed by it).
The signature does not cover ``transaction_status``, so Midtrans advises confirming a notification
with the status call: the switch should ``sync`` before acting on a final status.

Every POST (charge, cancel, refund) carries ``Idempotency-Key`` (docs.midtrans.com/reference/
api-headers: accepted on all POST requests except ``/token`` and ``/account``; a retry while the
first request is still running answers HTTP 202 until it finishes).
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
    lookup_failed,
    not_found_outcome,
    provider_key,
    transport_outcome,
    undecodable_outcome,
)
from adapters.midtrans import transformers as t

DEFAULT_BASE_URL = "https://api.sandbox.midtrans.com"
# Midtrans documents a maximum Idempotency-Key length without a number we could confirm for the
# Core API (its Payouts API says 100); 64 stays inside any limit it documents.
KEY_LIMIT = 64
# Midtrans documents no lag for its status call; a charge it has not indexed within this many
# seconds of the attempt is taken as never received.
STATUS_CONSISTENCY_S = 600.0
# ``status_code`` values in a body that say the transaction exists or is being processed: a
# duplicate order id (406) means an earlier charge with this attempt id was received.
_EXISTS_CODES = frozenset({"406"})


def signature_key(order_id: str, status_code: str, gross_amount: str, server_key: str) -> str:
    """Midtrans's notification signature: hex SHA-512 of the four fields concatenated."""
    return hashlib.sha512(f"{order_id}{status_code}{gross_amount}{server_key}".encode()).hexdigest()


class MidtransAdapter(ProviderAdapter):
    """GoPay via Midtrans: ``requires_action`` with a deeplink, completed by notification."""

    webhook_confirm_by_sync = True

    name = "midtrans"
    flows = frozenset({Flow.AUTHORIZE, Flow.VOID, Flow.REFUND, Flow.SYNC, Flow.WEBHOOK})
    method_types = frozenset({"wallet", "gopay"})

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        total_timeout: float = 10.0,
        consistency_window_s: float = STATUS_CONSISTENCY_S,
    ) -> None:
        """Create the adapter.

        Args:
            credentials: ``api_key`` is the server key.
            total_timeout: Deadline in seconds for one call including retries.
            consistency_window_s: How long after an attempt a status call that finds nothing is
                still not proof that Midtrans never received the charge.
        """
        super().__init__(credentials)
        self.consistency_window_s = consistency_window_s
        basic = base64.b64encode(f"{self.credentials.api_key}:".encode()).decode()
        self.http = HttpTransport(
            "midtrans",
            self.credentials.base_url or DEFAULT_BASE_URL,
            total_timeout=total_timeout,
            idempotency_header="Idempotency-Key",
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
            # The idempotency key replays the first answer; past its five-minute lifetime Midtrans
            # still refuses a second charge for the same order_id (406), so a retry is safe.
            response = await self.http.request(
                "POST", "/v2/charge", json=body, idempotency_key=provider_key(request.idempotency_key, KEY_LIMIT)
            )
        except TransportError as exc:
            result = transport_outcome(exc)
            result.provider_reference = request.attempt_id
            return result
        return self._result(response, request.attempt_id)

    def _result(self, response: HttpResponse, order_id: str) -> ProviderResult:
        if response.status >= 500 or response.status == 429:
            return ProviderResult(
                outcome=http_error_outcome(response.status),
                provider_reference=order_id,
                raw_status=f"http_{response.status}",
            )
        try:
            data = msgspec.json.decode(response.body) if response.body else {}
            if not isinstance(data, dict):
                raise TypeError
            return self._classify(data, response.status, order_id)
        except (msgspec.DecodeError, TypeError, ValueError, ArithmeticError):
            if response.status < 300:
                # A 2xx we cannot read: Midtrans may have acted.
                return undecodable_outcome(response.status, order_id)
            return ProviderResult(
                outcome=http_error_outcome(response.status),
                provider_reference=order_id,
                raw_status=f"http_{response.status}",
            )

    def _classify(self, data: dict[str, Any], http_status: int, order_id: str) -> ProviderResult:
        status = data.get("transaction_status")
        if not status:
            # Midtrans answers HTTP 200 with the real status in ``status_code``.
            code = str(data.get("status_code") or "")
            if http_status == 202 or code in _EXISTS_CODES:
                # 202: the first request with this key is still running; 406: a charge with this
                # order id exists. Either may have moved money: resolve with the status call.
                outcome = Outcome.UNKNOWN
            else:
                outcome = http_error_outcome(int(code) if code.isdigit() else http_status)
            return ProviderResult(
                outcome=outcome, provider_reference=order_id, code=code or None, message=data.get("status_message")
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
        """``GET /v2/{order_id}/status`` for an authorization; other operations stay ``unknown``.

        Midtrans's status call reports the transaction, not one refund or cancel, so an unknown
        refund or void is resolved by replaying it with the same key (``refund_key`` and
        ``Idempotency-Key``). A status call that fails is ``unknown``; one that finds nothing is
        ``unknown`` until ``consistency_window_s`` has passed since the attempt.
        """
        order_id = request.provider_reference or request.attempt_id
        if request.operation != "authorize":
            return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=order_id, raw_status="no_lookup")
        try:
            response = await self.http.request("GET", f"/v2/{order_id}/status")
        except TransportError as exc:
            # A status call that failed proves nothing, even one that never left.
            return ProviderResult(
                outcome=Outcome.UNKNOWN, provider_reference=order_id, raw_status="timeout", message=str(exc)
            )
        result = self._result(response, order_id)
        if result.raw_status is None and result.code == "404":
            return not_found_outcome(request, self.consistency_window_s)
        if result.raw_status is None or result.raw_status.startswith(("http_", "unreadable")):
            return lookup_failed(response.status, order_id, result.code)
        return result

    async def void(self, request: VoidRequest) -> ProviderResult:
        """``POST /v2/{order_id}/cancel`` (an unpaid GoPay charge)."""
        try:
            response = await self.http.request(
                "POST",
                f"/v2/{request.provider_reference}/cancel",
                idempotency_key=provider_key(request.idempotency_key, KEY_LIMIT),
            )
        except TransportError as exc:
            return transport_outcome(exc)
        result = self._result(response, request.provider_reference)
        if result.raw_status == "cancel":
            result.outcome = Outcome.APPROVED  # the answer to our own cancel
        return result

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """``POST /v2/{order_id}/refund`` with ``refund_key`` as the idempotency key."""
        key = provider_key(request.idempotency_key, KEY_LIMIT)
        try:
            body = {
                "refund_key": key,
                "amount": t.to_gross_amount(request.amount, request.currency),
                "reason": request.refund_id,
            }
            response = await self.http.request(
                "POST", f"/v2/{request.provider_reference}/refund", json=body, idempotency_key=key
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


def _http_failure(status: int, order_id: str) -> ProviderResult:
    return ProviderResult(outcome=http_error_outcome(status), provider_reference=order_id, raw_status=f"http_{status}")
