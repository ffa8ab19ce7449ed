"""Simulated PayPal: OAuth token, Orders v2, Payments v2, stand-in HMAC-signed webhooks."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from adapters.paypal import sign_webhook
from adapters.paypal.transformers import from_paypal_value
from adapters.simulator.providers import new_id

if TYPE_CHECKING:
    from adapters.simulator.books import MovementKind
    from adapters.simulator.server import Simulator

DEFAULT_SECRET = "paypal-simulator-secret"  # noqa: S105 - the simulator\'s public test secret
DEFAULT_WEBHOOK_ID = "WH-SIMULATOR"


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _error(status: int, name: str, issue: str, description: str) -> web.Response:
    return web.json_response(
        {
            "name": name,
            "message": description,
            "debug_id": uuid.uuid4().hex[:13],
            "details": [{"issue": issue, "description": description}],
        },
        status=status,
    )


def _cents(value: str) -> int:
    # The simulator compares amounts only; scale by 1000 so every currency's decimals stay exact.
    whole, _, frac = value.partition(".")
    return int(whole) * 1000 + int((frac + "000")[:3])


class PayPalSim:
    """Stateful PayPal orders, authorizations, captures and refunds."""

    name = "paypal"

    def __init__(self, sim: Simulator) -> None:
        """Bind to the simulator."""
        self.sim = sim
        self.orders: dict[str, dict[str, Any]] = {}
        self.authorizations: dict[str, tuple[str, dict[str, Any]]] = {}
        self.captures: dict[str, tuple[str, dict[str, Any]]] = {}
        self.tokens: set[str] = set()

    def reset(self) -> None:
        """Forget everything (tokens stay valid)."""
        self.orders.clear()
        self.authorizations.clear()
        self.captures.clear()

    def routes(self) -> list[web.RouteDef]:
        """PayPal's endpoints under ``/paypal``."""
        return [
            web.post("/paypal/v1/oauth2/token", self.token),
            web.post("/paypal/v2/checkout/orders", self.create_order),
            web.get("/paypal/v2/checkout/orders/{id}", self.get_order),
            web.post("/paypal/v2/checkout/orders/{id}/authorize", self.authorize_order),
            web.post("/paypal/v2/checkout/orders/{id}/capture", self.capture_order),
            web.post("/paypal/v2/payments/authorizations/{id}/capture", self.capture_authorization),
            web.post("/paypal/v2/payments/authorizations/{id}/void", self.void_authorization),
            web.post("/paypal/v2/payments/captures/{id}/refund", self.refund_capture),
        ]

    def _event(self, event_type: str, resource: dict[str, Any]) -> None:
        payload = msgspec.json.encode(
            {
                "id": f"WH-{uuid.uuid4().hex[:17].upper()}",
                "event_version": "1.0",
                "create_time": _iso_now(),
                "resource_type": event_type.split(".")[1].lower(),
                "event_type": event_type,
                "resource": resource,
            }
        )
        secret = self.sim.secret(self.name, DEFAULT_SECRET)

        def deliver() -> tuple[bytes, dict[str, str]]:
            tid, ttime = str(uuid.uuid4()), _iso_now()
            return payload, {
                "Content-Type": "application/json",
                "PAYPAL-TRANSMISSION-ID": tid,
                "PAYPAL-TRANSMISSION-TIME": ttime,
                "PAYPAL-AUTH-ALGO": "HMAC-SHA256",
                "PAYPAL-TRANSMISSION-SIG": sign_webhook(secret, DEFAULT_WEBHOOK_ID, payload, tid, ttime),
            }

        self.sim.emit(self.name, deliver)

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.tokens

    async def _json(self, request: web.Request) -> dict[str, Any] | web.Response:
        if not self._authorized(request):
            return web.json_response(
                {"error": "invalid_token", "error_description": "Token signature verification failed"}, status=401
            )
        raw = await request.read()
        try:
            body = msgspec.json.decode(raw) if raw else {}
        except msgspec.DecodeError:
            return _error(400, "INVALID_REQUEST", "MALFORMED_REQUEST_JSON", "The request JSON is not well formed.")
        return body if isinstance(body, dict) else {}

    async def token(self, request: web.Request) -> web.Response:
        """``POST /v1/oauth2/token`` (client credentials, Basic auth)."""
        if not request.headers.get("Authorization", "").startswith("Basic "):
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client Authentication failed"}, status=401
            )
        token = new_id("A21AA", 40)
        self.tokens.add(token)
        return web.json_response(
            {
                "scope": "https://uri.paypal.com/services/payments/payment",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": 32400,
                "nonce": uuid.uuid4().hex,
            }
        )

    def _links(self, order: dict[str, Any]) -> list[dict[str, str]]:
        base = f"https://api.sandbox.paypal.com/v2/checkout/orders/{order['id']}"
        links = [{"href": base, "rel": "self", "method": "GET"}]
        if order["status"] == "PAYER_ACTION_REQUIRED":
            links.append(
                {
                    "href": f"https://www.sandbox.paypal.com/checkoutnow?token={order['id']}",
                    "rel": "payer-action",
                    "method": "GET",
                }
            )
        return links

    async def create_order(self, request: web.Request) -> web.Response:
        """``POST /v2/checkout/orders``.

        As at PayPal, an order with ``payment_source.card`` is processed at once: ``intent``
        CAPTURE answers a COMPLETED order with its capture, AUTHORIZE one with its authorization.
        A PayPal-wallet order waits for the payer.
        """
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        units = body.get("purchase_units") or []
        if body.get("intent") not in {"CAPTURE", "AUTHORIZE"} or len(units) != 1 or "amount" not in units[0]:
            return _error(400, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER", "intent and one purchase unit needed")
        source = body.get("payment_source") or {}
        order = {
            "id": new_id("", 17).upper(),
            "intent": body["intent"],
            "create_time": _iso_now(),
            "status": "PAYER_ACTION_REQUIRED" if "paypal" in source else "APPROVED",
            "purchase_units": [{**units[0], "payments": {}}],
            "payment_source": _mask_source(source),
        }
        self.orders[order["id"]] = order
        if "card" in source:
            self._process(order, "capture" if body["intent"] == "CAPTURE" else "authorize", request)
        order["links"] = self._links(order)
        return web.json_response(order, status=201)

    async def get_order(self, request: web.Request) -> web.Response:
        """``GET /v2/checkout/orders/{id}``."""
        if not self._authorized(request):
            return web.json_response({"error": "invalid_token"}, status=401)
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "Specified resource ID does not exist.")
        return web.json_response(order)

    def _record(self, kind: MovementKind, item: dict[str, Any], request: web.Request | None, **extra: Any) -> None:
        amount = item["amount"]
        currency = str(amount["currency_code"]).upper()
        self.sim.books.record(
            self.name,
            kind,
            object_id=str(extra.pop("object_id", item["id"])),
            amount=from_paypal_value(str(amount["value"]), currency),
            currency=currency,
            payment_id=extra.pop("payment_id", item.get("custom_id")),
            idempotency_key=request.headers.get("PayPal-Request-Id") if request is not None else None,
            **extra,
        )

    def _process(self, order: dict[str, Any], kind: str, request: web.Request) -> None:
        """Authorize or capture the order's amount (on create with a card, or after approval)."""
        unit = order["purchase_units"][0]
        code = self.sim.decide(self.name, "5100")
        item = {
            "id": new_id("", 17).upper(),
            "amount": unit["amount"],
            "custom_id": unit.get("custom_id"),
            "create_time": _iso_now(),
            "update_time": _iso_now(),
            "processor_response": {"avs_code": "Y", "cvv_code": "M", "response_code": code or "0000"},
            "supplementary_data": {"related_ids": {"order_id": order["id"]}},
        }
        if kind == "authorize":
            item["status"] = "CREATED" if code is None else "DENIED"
            item["expiration_time"] = _iso_now()
            item["captured"] = 0
            unit["payments"]["authorizations"] = [item]
            self.authorizations[item["id"]] = (order["id"], item)
            if code is None:
                self._record("authorize", item, request, captured=False, object_id=order["id"])
                self._event("PAYMENT.AUTHORIZATION.CREATED", item)
        else:
            item["status"] = "COMPLETED" if code is None else "DECLINED"
            item["final_capture"] = True
            item["refunded"] = 0
            unit["payments"]["captures"] = [item]
            self.captures[item["id"]] = (order["id"], item)
            if code is None:
                self._record("authorize", item, request, captured=True, object_id=order["id"])
            self._event("PAYMENT.CAPTURE.COMPLETED" if code is None else "PAYMENT.CAPTURE.DECLINED", item)
        order["status"] = "COMPLETED"

    async def _complete_order(self, request: web.Request, kind: str) -> web.Response:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "Specified resource ID does not exist.")
        if order["status"] == "COMPLETED":
            # As PayPal answers a second capture/authorize of a processed order.
            payments = order["purchase_units"][0]["payments"]
            issue = "ORDER_ALREADY_CAPTURED" if payments.get("captures") else "ORDER_ALREADY_AUTHORIZED"
            return _error(422, "UNPROCESSABLE_ENTITY", issue, "Order already processed.")
        if order["status"] != "APPROVED":
            return _error(422, "UNPROCESSABLE_ENTITY", "ORDER_NOT_APPROVED", "Payer has not yet approved the Order.")
        self._process(order, kind, request)
        order["links"] = self._links(order)
        return web.json_response(order, status=201)

    async def authorize_order(self, request: web.Request) -> web.Response:
        """``POST /v2/checkout/orders/{id}/authorize``."""
        return await self._complete_order(request, "authorize")

    async def capture_order(self, request: web.Request) -> web.Response:
        """``POST /v2/checkout/orders/{id}/capture``."""
        return await self._complete_order(request, "capture")

    async def capture_authorization(self, request: web.Request) -> web.Response:
        """``POST /v2/payments/authorizations/{id}/capture``."""
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        found = self.authorizations.get(request.match_info["id"])
        if found is None:
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "Specified resource ID does not exist.")
        order_id, auth = found
        if auth["status"] not in {"CREATED", "PARTIALLY_CAPTURED"}:
            issue = "AUTHORIZATION_VOIDED" if auth["status"] == "VOIDED" else "AUTHORIZATION_ALREADY_CAPTURED"
            return _error(422, "UNPROCESSABLE_ENTITY", issue, f"Authorization is {auth['status']}.")
        amount = body.get("amount") or auth["amount"]
        if auth["captured"] + _cents(amount["value"]) > _cents(auth["amount"]["value"]):
            return _error(422, "UNPROCESSABLE_ENTITY", "MAX_CAPTURE_AMOUNT_EXCEEDED", "Capture amount exceeded.")
        auth["captured"] += _cents(amount["value"])
        final = body.get("final_capture", True)
        auth["status"] = (
            "CAPTURED" if final or auth["captured"] == _cents(auth["amount"]["value"]) else "PARTIALLY_CAPTURED"
        )
        capture = {
            "id": new_id("", 17).upper(),
            "status": "COMPLETED",
            "amount": amount,
            "final_capture": final,
            "custom_id": auth.get("custom_id"),
            "create_time": _iso_now(),
            "refunded": 0,
            "supplementary_data": {"related_ids": {"order_id": order_id, "authorization_id": auth["id"]}},
        }
        self.captures[capture["id"]] = (order_id, capture)
        self.orders[order_id]["purchase_units"][0]["payments"].setdefault("captures", []).append(capture)
        self._record("capture", capture, request)
        self._event("PAYMENT.CAPTURE.COMPLETED", capture)
        return web.json_response(capture, status=201)

    async def void_authorization(self, request: web.Request) -> web.Response:
        """``POST /v2/payments/authorizations/{id}/void`` (204 as with ``Prefer: return=minimal``)."""
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        found = self.authorizations.get(request.match_info["id"])
        if found is None:
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "Specified resource ID does not exist.")
        _, auth = found
        if auth["status"] != "CREATED":
            return _error(
                422,
                "UNPROCESSABLE_ENTITY",
                "PREVIOUSLY_CAPTURED" if auth["captured"] else "PREVIOUSLY_VOIDED",
                f"Authorization is {auth['status']}.",
            )
        auth["status"] = "VOIDED"
        self._record("void", auth, request)
        self._event("PAYMENT.AUTHORIZATION.VOIDED", auth)
        return web.Response(status=204)

    async def refund_capture(self, request: web.Request) -> web.Response:
        """``POST /v2/payments/captures/{id}/refund``."""
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        found = self.captures.get(request.match_info["id"])
        if found is None:
            return _error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "Specified resource ID does not exist.")
        order_id, capture = found
        amount = body.get("amount") or capture["amount"]
        if capture["status"] not in {"COMPLETED", "PARTIALLY_REFUNDED"}:
            return _error(422, "UNPROCESSABLE_ENTITY", "CAPTURE_FULLY_REFUNDED", "Capture cannot be refunded.")
        if capture["refunded"] + _cents(amount["value"]) > _cents(capture["amount"]["value"]):
            return _error(422, "UNPROCESSABLE_ENTITY", "REFUND_AMOUNT_EXCEEDED", "Refund exceeds captured amount.")
        capture["refunded"] += _cents(amount["value"])
        capture["status"] = (
            "REFUNDED" if capture["refunded"] == _cents(capture["amount"]["value"]) else "PARTIALLY_REFUNDED"
        )
        refund = {
            "id": new_id("", 17).upper(),
            "status": "COMPLETED",
            "amount": amount,
            "custom_id": body.get("custom_id"),
            "create_time": _iso_now(),
            "supplementary_data": {"related_ids": {"order_id": order_id, "capture_id": capture["id"]}},
        }
        self.orders[order_id]["purchase_units"][0]["payments"].setdefault("refunds", []).append(refund)
        self._record("refund", refund, request, payment_id=capture.get("custom_id"))
        self._event("PAYMENT.CAPTURE.REFUNDED", refund)
        return web.json_response(refund, status=201)

    async def complete(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """Admin: the payer approved (``{"status": "succeeded"}``) a PAYER_ACTION_REQUIRED order."""
        order = self.orders[ref]
        if order["status"] == "PAYER_ACTION_REQUIRED":
            order["status"] = "APPROVED" if body.get("status", "succeeded") == "succeeded" else "VOIDED"
            order["links"] = self._links(order)
            if order["status"] == "APPROVED":
                self._event(
                    "CHECKOUT.ORDER.APPROVED",
                    {"id": order["id"], "status": "APPROVED", "purchase_units": order["purchase_units"]},
                )
        return {"id": order["id"], "status": order["status"]}


def _mask_source(source: dict[str, Any]) -> dict[str, Any]:
    card = source.get("card")
    if not card:
        return source
    # PayPal answers with last digits and brand only, never the number or security code.
    return {
        "card": {
            "last_digits": str(card.get("number", ""))[-4:],
            "brand": "VISA",
            "type": "CREDIT",
            "expiry": card.get("expiry"),
        }
    }
