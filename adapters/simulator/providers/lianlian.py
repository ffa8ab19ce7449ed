"""Simulated LianLian Global checkout sessions: create, query, refund, signed notifications.

Every request must carry a valid ``LLPAY-Signature`` (401 otherwise); every answer and
notification is signed the same way. A session starts ``WP`` with a ``checkout_url`` and ends
``PS`` or ``PF`` with the ISO 8583 failure code drawn from ``decline_mix`` at creation, when the
payer "pays" (admin ``complete`` or ``auto_complete``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from adapters.base import WebhookRejected
from adapters.lianlian import transformers as t
from adapters.simulator.providers import new_id

if TYPE_CHECKING:
    from adapters.simulator.books import MovementKind
    from adapters.simulator.server import Simulator

DEFAULT_KEY = "lianlian-simulator-signing-key"
PREFIX = "/lianlian"


class LianLianSim:
    """Stateful sessions keyed by merchant_transaction_id."""

    name = "lianlian"

    def __init__(self, sim: Simulator) -> None:
        """Bind to the simulator."""
        self.sim = sim
        self.payments: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        """Forget everything."""
        self.payments.clear()

    def routes(self) -> list[web.RouteDef]:
        """LianLian's endpoints under ``/lianlian``."""
        return [
            web.post(f"{PREFIX}/accept_payments/checkout/sessions", self.create),
            web.get(f"{PREFIX}/accept_payments/payments/{{mtid}}", self.query),
            web.post(f"{PREFIX}/accept_payments/refunds", self.refund),
        ]

    def _key(self) -> str:
        return self.sim.secret(self.name, DEFAULT_KEY)

    def _answer(self, body: dict[str, Any], status: int = 200) -> web.Response:
        return web.json_response(
            body, status=status, headers={t.SIGNATURE_HEADER: t.signature_header(self._key(), body)}
        )

    async def _open(self, request: web.Request) -> dict[str, Any] | web.Response:
        raw = await request.read()
        try:
            body = msgspec.json.decode(raw) if raw else {}
            path = request.path_qs.removeprefix(PREFIX)
            t.verify_signature(self._key(), body, request.headers.get(t.SIGNATURE_HEADER, ""), path=path)
        except (msgspec.DecodeError, WebhookRejected):
            return self._answer({"code": "401", "message": "signature verification failed"}, 401)
        return body

    def _record(
        self,
        kind: MovementKind,
        payment: dict[str, Any],
        amount: str,
        key: str | None,
        *,
        captured: bool = False,
        object_id: str | None = None,
    ) -> None:
        currency = str(payment["order_currency"]).upper()
        self.sim.books.record(
            self.name,
            kind,
            object_id=object_id or payment["merchant_transaction_id"],
            amount=t.from_lianlian_amount(amount, currency),
            currency=currency,
            payment_id=(payment.get("metadata") or {}).get("payment_id"),
            captured=captured,
            idempotency_key=key,
        )

    @staticmethod
    def _view(payment: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payment.items() if not k.startswith("_")}

    def _notify(self, payment: dict[str, Any]) -> None:
        note = {**self._view(payment), "notification_id": new_id("ntf_"), "notification_type": "payment"}
        note.pop("checkout_url", None)
        payload = msgspec.json.encode(note)
        key = self._key()

        def deliver() -> tuple[bytes, dict[str, str]]:
            return payload, {"Content-Type": "application/json", t.SIGNATURE_HEADER: t.signature_header(key, note)}

        self.sim.emit(self.name, deliver)

    async def create(self, request: web.Request) -> web.Response:
        """``POST /accept_payments/checkout/sessions``."""
        opened = await self._open(request)
        if isinstance(opened, web.Response):
            return opened
        mtid = str(opened.get("merchant_transaction_id", ""))
        if mtid in self.payments:
            return self._answer({"code": "409", "message": "merchant_transaction_id already used"}, 409)
        session = new_id("cs_", 20)
        payment = {
            "merchant_transaction_id": mtid,
            "ll_transaction_id": new_id("LL", 18),
            "session_id": session,
            "payment_status": "WP",
            "order_amount": str(opened.get("order_amount", "")),
            "order_currency": str(opened.get("order_currency", "")),
            "checkout_url": f"https://checkout-sandbox.lianlianpay-inc.com/session/{session}",
            "failure_code": None,
            "failure_reason": None,
            "metadata": opened.get("metadata"),
            "_decision": self.sim.decide(self.name, "05"),
            "_refunded": 0,
            "_key": request.headers.get("Idempotency-Key"),
        }
        self.payments[mtid] = payment
        if self.sim.knobs(self.name).auto_complete:
            self.sim.schedule(0.0, lambda: self._finish(mtid, None))
        return self._answer(self._view(payment))

    def _finish(self, mtid: str, body: dict[str, Any] | None) -> dict[str, Any]:
        payment = self.payments[mtid]
        if payment["payment_status"] in {"WP", "PP"}:
            wanted = (body or {}).get("status")
            code = payment["_decision"] if wanted is None else None
            if wanted == "failed":
                code = str((body or {}).get("code") or "05")
            payment["payment_status"] = "PF" if code else "PS"
            payment["failure_code"] = code
            if not code:
                # The payer paid on the hosted page: a sale, recorded when it happens.
                self._record("authorize", payment, payment["order_amount"], payment["_key"], captured=True)
            payment["failure_reason"] = "declined by the issuer" if code else None
            self._notify(payment)
        return self._view(payment)

    async def complete(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """Admin: the payer paid (``succeeded``), failed (``failed`` + ``code``), or the draw."""
        if ref not in self.payments:
            raise KeyError(ref)
        return self._finish(ref, body)

    async def query(self, request: web.Request) -> web.Response:
        """``GET /accept_payments/payments/{merchant_transaction_id}``."""
        opened = await self._open(request)
        if isinstance(opened, web.Response):
            return opened
        payment = self.payments.get(request.match_info["mtid"])
        if payment is None:
            return self._answer({"code": "404", "message": "payment not found"}, 404)
        return self._answer(self._view(payment))

    async def refund(self, request: web.Request) -> web.Response:
        """``POST /accept_payments/refunds``; refunds complete at once in the simulator."""
        opened = await self._open(request)
        if isinstance(opened, web.Response):
            return opened
        payment = self.payments.get(str(opened.get("original_merchant_transaction_id", "")))
        if payment is None:
            return self._answer({"code": "404", "message": "payment not found"}, 404)
        currency = payment["order_currency"]
        amount = t.from_lianlian_amount(str(opened.get("refund_amount", "0")), currency)
        total = t.from_lianlian_amount(payment["order_amount"], currency)
        if payment["payment_status"] != "PS" or payment["_refunded"] + amount > total:
            return self._answer({"code": "422", "message": "refund not allowed"}, 422)
        payment["_refunded"] += amount
        refund_id = new_id("LR", 18)
        self._record(
            "refund",
            payment,
            str(opened.get("refund_amount", "0")),
            request.headers.get("Idempotency-Key"),
            object_id=refund_id,
        )
        return self._answer(
            {
                "merchant_refund_id": str(opened.get("merchant_refund_id", "")),
                "ll_refund_id": refund_id,
                "refund_status": "RS",
                "refund_amount": str(opened.get("refund_amount")),
                "refund_currency": currency,
            }
        )
