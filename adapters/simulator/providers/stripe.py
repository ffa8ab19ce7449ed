"""Simulated Stripe: PaymentIntents (card, konbini), Refunds, search, signed Events."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from adapters.simulator.providers import new_id, now
from adapters.stripe import sign_webhook
from adapters.stripe.transformers import from_stripe_amount

if TYPE_CHECKING:
    from adapters.simulator.books import MovementKind
    from adapters.simulator.server import Simulator

DEFAULT_SECRET = "whsec_simulator"  # noqa: S105 - the simulator\'s public test secret
THREE_DS_CARD = "4000002500003155"
# Decline codes Stripe reports in ``error.code`` itself rather than as card_declined.
_OWN_CODES = {"expired_card", "incorrect_cvc", "incorrect_number", "processing_error", "authentication_required"}


def _err(status: int, type_: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"type": type_, "message": message, **extra}}, status=status)


class StripeSim:
    """Stateful Stripe PaymentIntents."""

    name = "stripe"

    def __init__(self, sim: Simulator) -> None:
        """Bind to the simulator."""
        self.sim = sim
        self.intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        # When each intent was written, for the search index's lag (kept out of the answers).
        self.created_at: dict[str, float] = {}

    def reset(self) -> None:
        """Forget everything."""
        self.intents.clear()
        self.refunds.clear()
        self.created_at.clear()

    def routes(self) -> list[web.RouteDef]:
        """Stripe's endpoints under ``/stripe``."""
        p = "/stripe/v1"
        return [
            web.post(f"{p}/payment_intents", self.create),
            web.get(f"{p}/payment_intents/search", self.search),
            web.get(f"{p}/payment_intents/{{id}}", self.retrieve),
            web.post(f"{p}/payment_intents/{{id}}/capture", self.capture),
            web.post(f"{p}/payment_intents/{{id}}/cancel", self.cancel),
            web.post(f"{p}/refunds", self.refund),
            web.get(f"{p}/refunds", self.list_refunds),
        ]

    @staticmethod
    def _authorized(request: web.Request) -> bool:
        return request.headers.get("Authorization", "").startswith("Bearer sk_")

    def _record(
        self, kind: MovementKind, intent: dict[str, Any], amount: int, request: web.Request, **extra: Any
    ) -> None:
        # Books are in ISO minor units; Stripe's smallest unit differs for a few currencies.
        currency = intent["currency"].upper()
        self.sim.books.record(
            self.name,
            kind,
            object_id=extra.pop("object_id", intent["id"]),
            amount=from_stripe_amount(amount, currency),
            currency=currency,
            payment_id=intent["metadata"].get("payment_id"),
            idempotency_key=request.headers.get("Idempotency-Key"),
            **extra,
        )

    def _event(self, type_: str, obj: dict[str, Any]) -> None:
        event = {
            "id": new_id("evt_"),
            "object": "event",
            "type": type_,
            "created": now(),
            "livemode": False,
            "data": {"object": obj},
        }
        payload = msgspec.json.encode(event)
        secret = self.sim.secret(self.name, DEFAULT_SECRET)

        def deliver() -> tuple[bytes, dict[str, str]]:
            return payload, {"Content-Type": "application/json", "Stripe-Signature": sign_webhook(secret, payload)}

        self.sim.emit(self.name, deliver)

    async def create(self, request: web.Request) -> web.Response:
        """``POST /v1/payment_intents`` with ``confirm=true``."""
        if not self._authorized(request):
            return _err(401, "invalid_request_error", "Invalid API Key provided.")
        form = await request.post()
        try:
            amount = int(str(form["amount"]))
            currency = str(form["currency"])
        except (KeyError, ValueError):
            return _err(400, "invalid_request_error", "Missing required param: amount.", param="amount")
        if amount < 1:
            return _err(400, "invalid_request_error", "Amount must be at least 1.", code="amount_too_small")
        metadata = {k[9:-1]: str(v) for k, v in form.items() if k.startswith("metadata[")}
        method = str(form.get("payment_method_data[type]", "card"))
        intent: dict[str, Any] = {
            "id": new_id("pi_"),
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "currency": currency,
            "capture_method": str(form.get("capture_method", "automatic")),
            "status": "requires_payment_method",
            "metadata": metadata,
            "payment_method_types": [method],
            "created": now(),
            "livemode": False,
            "next_action": None,
            "last_payment_error": None,
            "latest_charge": None,
            "amount_refunded": 0,
        }
        self.intents[intent["id"]] = intent
        self.created_at[intent["id"]] = time.time()
        if method == "konbini":
            if currency != "jpy" or not 120 <= amount <= 300_000:
                del self.intents[intent["id"]]
                return _err(
                    400, "invalid_request_error", "Konbini needs JPY 120-300000.", code="parameter_invalid_integer"
                )
            return self._konbini(intent)
        number = str(form.get("payment_method_data[card][number]", ""))
        if number == THREE_DS_CARD:
            intent["status"] = "requires_action"
            intent["next_action"] = {
                "type": "redirect_to_url",
                "redirect_to_url": {
                    "url": f"https://hooks.stripe.com/3d_secure_2/hosted?payment_intent={intent['id']}",
                    "return_url": str(form.get("return_url", "")),
                },
            }
            return web.json_response(intent)
        code = self.sim.decide(self.name, "generic_decline")
        if code is not None:
            error = {
                "code": code if code in _OWN_CODES else "card_declined",
                "decline_code": code,
                "message": "Your card was declined.",
                "type": "card_error",
            }
            intent["last_payment_error"] = error
            self._event("payment_intent.payment_failed", intent)
            return _err(
                402,
                "card_error",
                "Your card was declined.",
                code=error["code"],
                decline_code=code,
                payment_intent=intent,
            )
        intent["latest_charge"] = new_id("ch_")
        if intent["capture_method"] == "manual":
            intent["status"] = "requires_capture"
            intent["amount_capturable"] = amount
            self._record("authorize", intent, amount, request, captured=False)
            self._event("payment_intent.amount_capturable_updated", intent)
        else:
            intent["status"] = "succeeded"
            intent["amount_received"] = amount
            self._record("authorize", intent, amount, request, captured=True)
            self._event("payment_intent.succeeded", intent)
        return web.json_response(intent)

    def _konbini(self, intent: dict[str, Any]) -> web.Response:
        intent["status"] = "requires_action"
        expires = now() + 3 * 86400
        store = {"confirmation_number": "12345678901", "payment_code": "123456"}
        intent["next_action"] = {
            "type": "konbini_display_details",
            "konbini_display_details": {
                "expires_at": expires,
                "hosted_voucher_url": f"https://payments.stripe.com/konbini/voucher/{intent['id']}",
                "stores": {"familymart": store, "lawson": store, "ministop": store, "seicomart": store},
            },
        }
        code = self.sim.decide(self.name, "generic_decline")
        if self.sim.knobs(self.name).auto_complete:
            # The customer "pays" at once; the webhook knob delays the notification.
            self.sim.schedule(0.0, lambda: self._finish(intent["id"], code))
        return web.json_response(intent)

    def _finish(self, intent_id: str, code: str | None) -> dict[str, Any]:
        intent = self.intents[intent_id]
        if intent["status"] != "requires_action":
            return intent
        intent["next_action"] = None
        if code is None:
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
            intent["latest_charge"] = new_id("ch_")
            # The customer paid at the store: a sale, recorded when it happens.
            self.sim.books.record(
                self.name,
                "authorize",
                object_id=intent["id"],
                amount=from_stripe_amount(intent["amount"], intent["currency"].upper()),
                currency=intent["currency"].upper(),
                payment_id=intent["metadata"].get("payment_id"),
                captured=True,
            )
            self._event("payment_intent.succeeded", intent)
        else:
            # An unpaid voucher expires and the intent goes back to requires_payment_method.
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "code": "payment_intent_payment_attempt_expired",
                "decline_code": code,
                "type": "invalid_request_error",
            }
            self._event("payment_intent.payment_failed", intent)
        return intent

    async def complete(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """Admin: the customer paid (``{"status": "succeeded"}``) or the voucher expired."""
        if ref not in self.intents:
            raise KeyError(ref)
        code = None if body.get("status", "succeeded") == "succeeded" else str(body.get("code", "expired"))
        return self._finish(ref, code)

    async def retrieve(self, request: web.Request) -> web.Response:
        """``GET /v1/payment_intents/{id}``."""
        if not self._authorized(request):
            return _err(401, "invalid_request_error", "Invalid API Key provided.")
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return _err(404, "invalid_request_error", "No such payment_intent", code="resource_missing")
        return web.json_response(intent)

    async def search(self, request: web.Request) -> web.Response:
        """``GET /v1/payment_intents/search?query=metadata['attempt_id']:'x'`` (only that form).

        Like Stripe's, the index is eventually consistent: intents younger than the
        ``search_lag_ms`` knob are not visible yet, and ``search_down`` answers 500.
        """
        if not self._authorized(request):
            return _err(401, "invalid_request_error", "Invalid API Key provided.")
        knobs = self.sim.knobs(self.name)
        if getattr(knobs, "search_down", False):
            return _err(500, "api_error", "Search is temporarily unavailable.")
        lag_s = float(getattr(knobs, "search_lag_ms", 0.0)) / 1000.0
        query = request.query.get("query", "")
        wanted = query.rsplit(":", 1)[-1].strip("'\"")
        key = query.split("['", 1)[-1].split("']", 1)[0] if "['" in query else ""
        visible_before = time.time() - lag_s
        data = [
            i
            for i in self.intents.values()
            if i["metadata"].get(key) == wanted and (lag_s <= 0 or self.created_at.get(i["id"], 0.0) <= visible_before)
        ]
        return web.json_response({"object": "search_result", "data": data, "has_more": False})

    async def list_refunds(self, request: web.Request) -> web.Response:
        """``GET /v1/refunds?payment_intent=...`` (newest first, ``limit`` up to 100)."""
        if not self._authorized(request):
            return _err(401, "invalid_request_error", "Invalid API Key provided.")
        intent_id = request.query.get("payment_intent")
        try:
            limit = max(1, min(100, int(request.query.get("limit", "10"))))
        except ValueError:
            return _err(400, "invalid_request_error", "Invalid integer: limit", param="limit")
        refunds = [r for r in self.refunds.values() if intent_id is None or r["payment_intent"] == intent_id]
        refunds.sort(key=lambda r: r["created"], reverse=True)
        return web.json_response(
            {"object": "list", "url": "/v1/refunds", "data": refunds[:limit], "has_more": len(refunds) > limit}
        )

    async def capture(self, request: web.Request) -> web.Response:
        """``POST /v1/payment_intents/{id}/capture``."""
        if not self._authorized(request):
            return _err(401, "invalid_request_error", "Invalid API Key provided.")
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return _err(404, "invalid_request_error", "No such payment_intent", code="resource_missing")
        if intent["status"] != "requires_capture":
            return _err(
                400,
                "invalid_request_error",
                f"This PaymentIntent could not be captured because it has a status of {intent['status']}.",
                code="payment_intent_unexpected_state",
                payment_intent=intent,
            )
        form = await request.post()
        amount = int(str(form.get("amount_to_capture", intent["amount_capturable"])))
        if amount > intent["amount_capturable"]:
            return _err(
                400,
                "invalid_request_error",
                "amount_to_capture exceeds the capturable amount.",
                code="amount_too_large",
                payment_intent=intent,
            )
        intent["amount_received"] += amount
        if str(form.get("final_capture", "true")) == "false":
            intent["amount_capturable"] -= amount
        else:
            intent["amount_capturable"] = 0
        if intent["amount_capturable"] == 0:
            intent["status"] = "succeeded"
        self._record("capture", intent, amount, request)
        self._event("payment_intent.succeeded", intent)
        return web.json_response(intent)

    async def cancel(self, request: web.Request) -> web.Response:
        """``POST /v1/payment_intents/{id}/cancel``."""
        if not self._authorized(request):
            return _err(401, "invalid_request_error", "Invalid API Key provided.")
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return _err(404, "invalid_request_error", "No such payment_intent", code="resource_missing")
        if intent["status"] in {"succeeded", "canceled", "processing"}:
            return _err(
                400,
                "invalid_request_error",
                "This PaymentIntent could not be canceled.",
                code="payment_intent_unexpected_state",
                payment_intent=intent,
            )
        released = intent["amount_capturable"]
        intent["status"] = "canceled"
        intent["amount_capturable"] = 0
        intent["cancellation_reason"] = "requested_by_customer"
        if released:
            self._record("void", intent, released, request)
        self._event("payment_intent.canceled", intent)
        return web.json_response(intent)

    async def refund(self, request: web.Request) -> web.Response:
        """``POST /v1/refunds`` with ``payment_intent``."""
        if not self._authorized(request):
            return _err(401, "invalid_request_error", "Invalid API Key provided.")
        form = await request.post()
        intent = self.intents.get(str(form.get("payment_intent", "")))
        if intent is None:
            return _err(404, "invalid_request_error", "No such payment_intent", code="resource_missing")
        refundable = intent["amount_received"] - intent["amount_refunded"]
        amount = int(str(form.get("amount", refundable)))
        if intent["amount_received"] == 0:
            return _err(
                400,
                "invalid_request_error",
                "This PaymentIntent has not been captured.",
                code="charge_not_captured" if intent["status"] == "requires_capture" else "charge_not_refundable",
            )
        if amount > refundable:
            return _err(
                400,
                "invalid_request_error",
                "Refund amount is greater than unrefunded amount.",
                code="charge_already_refunded" if refundable == 0 else "amount_too_large",
            )
        intent["amount_refunded"] += amount
        # Konbini refunds wait for the customer's bank details, so they stay pending.
        status = "pending" if "konbini" in intent["payment_method_types"] else "succeeded"
        refund = {
            "id": new_id("re_"),
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "charge": intent["latest_charge"],
            "status": status,
            "created": now(),
            "metadata": {k[9:-1]: str(v) for k, v in form.items() if k.startswith("metadata[")},
        }
        self.refunds[refund["id"]] = refund
        self._record("refund", intent, amount, request, object_id=refund["id"])
        self._event("charge.refunded", {**refund, "object": "refund"})
        return web.json_response(refund)
