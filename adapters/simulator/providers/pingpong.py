"""Simulated PingPong Checkout v4: prePay (hosted cashier), query, refund, signed notifications.

Requests must carry a valid v4 ``sign`` (``104000`` otherwise). An order starts ``INIT`` with a
cashier ``paymentUrl`` and ends ``SUCCESS`` (``000000``) or ``FAILED`` with the result code drawn
from ``decline_mix`` at creation, when the shopper "pays" (admin ``complete`` or
``auto_complete``). A ``merchantTransactionId`` seen before answers its existing order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from adapters.pingpong import transformers as t
from adapters.simulator.providers import new_id, now

if TYPE_CHECKING:
    from adapters.simulator.books import MovementKind
    from adapters.simulator.server import Simulator

DEFAULT_SALT = "AC09D35CC78CA5E8491B77C5"
DESCRIPTIONS = {"000000": "Transaction succeeded", "001000": "Successful request", "104000": "Invalid signature"}


class PingPongSim:
    """Stateful PingPong orders keyed by transactionId."""

    name = "pingpong"

    def __init__(self, sim: Simulator) -> None:
        """Bind to the simulator."""
        self.sim = sim
        self.orders: dict[str, dict[str, Any]] = {}
        self.by_merchant_id: dict[str, str] = {}

    def reset(self) -> None:
        """Forget everything."""
        self.orders.clear()
        self.by_merchant_id.clear()

    def routes(self) -> list[web.RouteDef]:
        """PingPong's endpoints under ``/pingpong``."""
        return [
            web.post("/pingpong/v4/payment/prePay", self.pre_pay),
            web.post("/pingpong/v4/payment/query", self.query),
            web.post("/pingpong/v4/payment/refund", self.refund),
        ]

    def _salt(self) -> str:
        return self.sim.secret(self.name, DEFAULT_SALT)

    def _envelope(self, request_env: dict[str, Any], code: str, biz: dict[str, Any] | None) -> dict[str, Any]:
        env: dict[str, Any] = {
            "accId": request_env.get("accId", ""),
            "clientId": request_env.get("clientId", ""),
            "signType": t.SIGN_TYPE,
            "version": t.API_VERSION,
            "code": code,
            "description": DESCRIPTIONS.get(code, "request failed"),
        }
        if biz is not None:
            env["bizContent"] = t.biz_content(biz)
        env["sign"] = t.sign(self._salt(), env)
        return env

    def _record(
        self,
        kind: MovementKind,
        order: dict[str, Any],
        amount: str,
        key: str | None,
        *,
        captured: bool = False,
        object_id: str | None = None,
    ) -> None:
        currency = str(order["currency"]).upper()
        self.sim.books.record(
            self.name,
            kind,
            object_id=object_id or order["transactionId"],
            amount=t.from_pingpong_amount(amount, currency),
            currency=currency,
            payment_id=order.get("remark"),
            captured=captured,
            idempotency_key=key,
        )

    @staticmethod
    def _view(order: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in order.items() if not k.startswith("_")}

    async def _open(self, request: web.Request) -> tuple[dict[str, Any], dict[str, Any]] | web.Response:
        try:
            env = msgspec.json.decode(await request.read())
            biz = msgspec.json.decode(env["bizContent"])
        except (msgspec.DecodeError, KeyError, TypeError):
            return web.json_response({"code": "102000", "description": "Invalid or missing parameter"})
        flat = {k: v for k, v in env.items() if isinstance(v, str)}
        if t.sign(self._salt(), flat) != env.get("sign"):
            return web.json_response(self._envelope(env, "104000", None))
        return env, biz

    def _notify(self, order: dict[str, Any]) -> None:
        biz = {**self._view(order), "notifyType": "RECHARGE", "transactionTime": str(now())}
        biz.pop("paymentUrl", None)
        payload = msgspec.json.encode(self._envelope(order["_env"], order["code"] or "000000", biz))
        self.sim.emit(self.name, lambda: (payload, {"Content-Type": "application/json"}))

    async def pre_pay(self, request: web.Request) -> web.Response:
        """``/v4/payment/prePay``."""
        opened = await self._open(request)
        if isinstance(opened, web.Response):
            return opened
        env, biz = opened
        merchant_id = str(biz.get("merchantTransactionId", ""))
        existing = self.by_merchant_id.get(merchant_id)
        if existing is not None:
            return web.json_response(self._envelope(env, "001000", self._view(self.orders[existing])))
        tx_id = new_id("PP", 20)
        order = {
            "merchantTransactionId": merchant_id,
            "transactionId": tx_id,
            "requestId": str(biz.get("requestId", "")),
            "status": "INIT",
            "amount": str(biz.get("amount", "")),
            "currency": str(biz.get("currency", "")),
            "remark": biz.get("remark"),
            "code": None,
            "description": None,
            "paymentUrl": f"https://sandbox-acquirer-checkout.pingpongx.com/cashier?token={tx_id}",
            "_env": {"accId": env.get("accId"), "clientId": env.get("clientId")},
            "_decision": self.sim.decide(self.name, "301002"),
            "_refunded": 0,
            "_request_id": str(biz.get("requestId", "")) or None,
        }
        self.orders[tx_id] = order
        self.by_merchant_id[merchant_id] = tx_id
        if self.sim.knobs(self.name).auto_complete:
            self.sim.schedule(0.0, lambda: self._finish(tx_id, None))
        return web.json_response(self._envelope(env, "001000", self._view(order)))

    def _finish(self, tx_id: str, body: dict[str, Any] | None) -> dict[str, Any]:
        order = self.orders[tx_id]
        if order["status"] in {"INIT", "PROCESSING"}:
            wanted = (body or {}).get("status")
            code = order["_decision"] if wanted is None else None
            if wanted == "failed":
                code = str((body or {}).get("code") or "301002")
            order["status"] = "FAILED" if code else "SUCCESS"
            order["code"] = code or "000000"
            if not code:
                # The shopper paid in the cashier: a sale, recorded when it happens.
                self._record("authorize", order, order["amount"], order["_request_id"], captured=True)
            order["description"] = "Transaction declined" if code else "Transaction succeeded"
            # Each payment try in the cashier has its own request id.
            order["requestId"] = new_id("req_", 16)
            self._notify(order)
        return self._view(order)

    async def complete(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """Admin: the shopper paid (``succeeded``), failed (``failed`` + ``code``), or the draw."""
        tx_id = ref if ref in self.orders else self.by_merchant_id.get(ref)
        if tx_id is None:
            raise KeyError(ref)
        return self._finish(tx_id, body)

    async def query(self, request: web.Request) -> web.Response:
        """``/v4/payment/query`` by transactionId or merchantTransactionId."""
        opened = await self._open(request)
        if isinstance(opened, web.Response):
            return opened
        env, biz = opened
        tx_id = biz.get("transactionId") or self.by_merchant_id.get(str(biz.get("merchantTransactionId", "")))
        order = self.orders.get(str(tx_id))
        if order is None:
            return web.json_response(self._envelope(env, "107001", None))
        return web.json_response(self._envelope(env, "000000", self._view(order)))

    async def refund(self, request: web.Request) -> web.Response:
        """``/v4/payment/refund``; refunds complete at once in the simulator."""
        opened = await self._open(request)
        if isinstance(opened, web.Response):
            return opened
        env, biz = opened
        order = self.orders.get(str(biz.get("transactionId", "")))
        if order is None:
            return web.json_response(self._envelope(env, "107002", None))
        amount = t.from_pingpong_amount(str(biz.get("amount", "0")), order["currency"])
        total = t.from_pingpong_amount(order["amount"], order["currency"])
        if order["status"] != "SUCCESS":
            return web.json_response(self._envelope(env, "303000", None))
        if order["_refunded"] + amount > total:
            return web.json_response(self._envelope(env, "108003", None))
        order["_refunded"] += amount
        self._record(
            "refund",
            order,
            str(biz.get("amount", "0")),
            str(biz.get("requestId", "")) or None,
            object_id=str(biz.get("refundId", "")) or order["transactionId"],
        )
        answer = {
            "transactionId": order["transactionId"],
            "merchantTransactionId": order["merchantTransactionId"],
            "refundId": str(biz.get("refundId", "")),
            "status": "SUCCESS",
            "amount": str(biz.get("amount")),
            "currency": order["currency"],
            "code": "000000",
        }
        return web.json_response(self._envelope(env, "000000", answer))
