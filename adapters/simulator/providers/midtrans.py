"""Simulated Midtrans Core API for GoPay: charge, status, cancel, refund, signed notifications."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from adapters.midtrans import signature_key
from adapters.midtrans.transformers import from_gross_amount

if TYPE_CHECKING:
    from adapters.simulator.books import MovementKind
    from adapters.simulator.server import Simulator

DEFAULT_SERVER_KEY = "SB-Mid-server-simulator"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


class MidtransSim:
    """Stateful GoPay transactions keyed by order id."""

    name = "midtrans"

    def __init__(self, sim: Simulator) -> None:
        """Bind to the simulator."""
        self.sim = sim
        self.orders: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        """Forget everything."""
        self.orders.clear()

    def routes(self) -> list[web.RouteDef]:
        """Midtrans's endpoints under ``/midtrans``."""
        return [
            web.post("/midtrans/v2/charge", self.charge),
            web.get("/midtrans/v2/{order_id}/status", self.status),
            web.post("/midtrans/v2/{order_id}/cancel", self.cancel),
            web.post("/midtrans/v2/{order_id}/refund", self.refund),
        ]

    def _view(self, order: dict[str, Any], status_code: str, message: str) -> dict[str, Any]:
        return {k: v for k, v in order.items() if k not in {"decision", "refunded", "key"}} | {
            "status_code": status_code,
            "status_message": message,
        }

    def _notify(self, order: dict[str, Any]) -> None:
        status_code = "200" if order["transaction_status"] != "pending" else "201"
        note = self._view(order, status_code, "midtrans payment notification")
        note["signature_key"] = signature_key(
            order["order_id"], status_code, order["gross_amount"], self.sim.secret(self.name, DEFAULT_SERVER_KEY)
        )
        payload = msgspec.json.encode(note)
        self.sim.emit(self.name, lambda: (payload, {"Content-Type": "application/json"}))

    def _record(
        self, kind: MovementKind, order: dict[str, Any], rupiah: str | int, key: str | None, *, captured: bool = False
    ) -> None:
        self.sim.books.record(
            self.name,
            kind,
            object_id=order["order_id"],
            amount=from_gross_amount(rupiah),
            currency="IDR",
            payment_id=order.get("custom_field1"),
            captured=captured,
            idempotency_key=key,
        )

    @staticmethod
    def _authorized(request: web.Request) -> bool:
        return request.headers.get("Authorization", "").startswith("Basic ")

    async def charge(self, request: web.Request) -> web.Response:
        """``POST /v2/charge`` (gopay)."""
        if not self._authorized(request):
            return web.json_response({"status_code": "401", "status_message": "Unauthorized"}, status=401)
        body = msgspec.json.decode(await request.read())
        details = body.get("transaction_details") or {}
        order_id = str(details.get("order_id", ""))
        if order_id in self.orders:
            return web.json_response(
                {
                    "status_code": "406",
                    "status_message": "The request could not be completed due to a conflict: duplicate order ID",
                }
            )
        tx = str(uuid.uuid4())
        order = {
            "transaction_id": tx,
            "order_id": order_id,
            "merchant_id": "G000000000",
            "gross_amount": f"{int(details.get('gross_amount', 0))}.00",
            "currency": "IDR",
            "payment_type": "gopay",
            "transaction_time": _now(),
            "transaction_status": "pending",
            "fraud_status": "accept",
            "custom_field1": body.get("custom_field1"),
            "actions": [
                {
                    "name": "generate-qr-code",
                    "method": "GET",
                    "url": f"https://api.sandbox.midtrans.com/v2/gopay/{tx}/qr-code",
                },
                {
                    "name": "deeplink-redirect",
                    "method": "GET",
                    "url": f"https://simulator.sandbox.midtrans.com/gopay/partner/app/payment-pin?id={tx}",
                },
                {"name": "get-status", "method": "GET", "url": f"https://api.sandbox.midtrans.com/v2/{tx}/status"},
                {"name": "cancel", "method": "POST", "url": f"https://api.sandbox.midtrans.com/v2/{tx}/cancel"},
            ],
            "decision": self.sim.decide(self.name, "deny"),
            "refunded": 0,
            "key": request.headers.get("Idempotency-Key"),
        }
        self.orders[order_id] = order
        if self.sim.knobs(self.name).auto_complete:
            self.sim.schedule(0.0, lambda: self._finish(order_id, order["decision"] is None))
        return web.json_response(self._view(order, "201", "GoPay transaction is created"))

    def _finish(self, order_id: str, paid: bool) -> dict[str, Any]:
        order = self.orders[order_id]
        if order["transaction_status"] == "pending":
            order["transaction_status"] = "settlement" if paid else "deny"
            order["settlement_time"] = _now()
            if paid:
                # The customer paid in the GoPay app: a sale, recorded when it happens.
                self._record("authorize", order, order["gross_amount"], order["key"], captured=True)
            self._notify(order)
        return self._view(order, "200", "Success")

    async def complete(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """Admin: the customer paid in the GoPay app (or the charge was denied)."""
        if ref not in self.orders:
            raise KeyError(ref)
        return self._finish(ref, body.get("status", "succeeded") == "succeeded")

    async def status(self, request: web.Request) -> web.Response:
        """``GET /v2/{order_id}/status``."""
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return web.json_response({"status_code": "404", "status_message": "Transaction doesn't exist."})
        return web.json_response(self._view(order, "200", "Success, transaction is found"))

    async def cancel(self, request: web.Request) -> web.Response:
        """``POST /v2/{order_id}/cancel``."""
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return web.json_response({"status_code": "404", "status_message": "Transaction doesn't exist."})
        if order["transaction_status"] != "pending":
            return web.json_response({"status_code": "412", "status_message": "Merchant cannot modify the status"})
        order["transaction_status"] = "cancel"
        self._notify(order)
        return web.json_response(self._view(order, "200", "Success, transaction is canceled"))

    async def refund(self, request: web.Request) -> web.Response:
        """``POST /v2/{order_id}/refund``."""
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return web.json_response({"status_code": "404", "status_message": "Transaction doesn't exist."})
        body = msgspec.json.decode(await request.read() or b"{}")
        amount = int(body.get("amount", 0))
        total = int(order["gross_amount"].split(".")[0])
        if order["transaction_status"] not in {"settlement", "partial_refund"} or order["refunded"] + amount > total:
            return web.json_response({"status_code": "412", "status_message": "Merchant cannot modify the status"})
        order["refunded"] += amount
        order["transaction_status"] = "refund" if order["refunded"] == total else "partial_refund"
        self._record("refund", order, amount, request.headers.get("Idempotency-Key") or body.get("refund_key"))
        self._notify(order)
        view = self._view(order, "200", "Success, refund request is approved")
        view["refund_amount"] = f"{amount}.00"
        view["gross_amount"] = f"{amount}.00"
        return web.json_response(view)
