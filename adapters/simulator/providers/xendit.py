"""Simulated Xendit e-wallet charges: create, get, refund, and ``x-callback-token`` callbacks.

A charge starts ``PENDING`` with checkout URLs. It completes when the customer "pays" (admin
``complete``, or by itself with ``auto_complete``): ``SUCCEEDED``, or ``FAILED`` with the failure
code drawn from ``decline_mix`` when the charge was created. Magic amount (Xendit test mode):
``10100`` answers 403 ``CHANNEL_NOT_ACTIVATED`` at creation.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from adapters.base import decode_json_exact
from adapters.simulator.providers import new_id
from adapters.xendit.transformers import from_xendit_amount

if TYPE_CHECKING:
    from adapters.simulator.books import MovementKind
    from adapters.simulator.server import Simulator

DEFAULT_CALLBACK_TOKEN = "xendit-callback-token-simulator"  # noqa: S105 - the simulator's public test token
_encoder = msgspec.json.Encoder(decimal_format="number")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(data), status=status, content_type="application/json")


class XenditSim:
    """Stateful e-wallet charges keyed by charge id."""

    name = "xendit"

    def __init__(self, sim: Simulator) -> None:
        """Bind to the simulator."""
        self.sim = sim
        self.charges: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        """Forget everything."""
        self.charges.clear()

    def routes(self) -> list[web.RouteDef]:
        """Xendit's e-wallet endpoints under ``/xendit``."""
        return [
            web.post("/xendit/ewallets/charges", self.create),
            web.get("/xendit/ewallets/charges/{id}", self.get),
            web.post("/xendit/ewallets/charges/{id}/refunds", self.refund),
        ]

    @staticmethod
    def _authorized(request: web.Request) -> bool:
        return request.headers.get("Authorization", "").startswith("Basic ")

    def _record(
        self,
        kind: MovementKind,
        charge: dict[str, Any],
        amount: Decimal,
        key: str | None,
        *,
        captured: bool = False,
        object_id: str | None = None,
    ) -> None:
        currency = str(charge["currency"]).upper()
        self.sim.books.record(
            self.name,
            kind,
            object_id=object_id or charge["id"],
            amount=from_xendit_amount(amount, currency),
            currency=currency,
            payment_id=(charge.get("metadata") or {}).get("payment_id"),
            captured=captured,
            idempotency_key=key,
        )

    @staticmethod
    def _view(charge: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in charge.items() if not k.startswith("_")}

    def _notify(self, charge: dict[str, Any]) -> None:
        payload = _encoder.encode(
            {
                "event": "ewallet.capture",
                "business_id": charge["business_id"],
                "created": _now(),
                "data": self._view(charge),
            }
        )
        # One id per notification: Xendit's retries of the same callback repeat it.
        webhook_id = str(uuid.uuid4())
        token = self.sim.secret(self.name, DEFAULT_CALLBACK_TOKEN)
        self.sim.emit(
            self.name,
            lambda: (
                payload,
                {"Content-Type": "application/json", "x-callback-token": token, "webhook-id": webhook_id},
            ),
        )

    async def create(self, request: web.Request) -> web.Response:
        """``POST /ewallets/charges``."""
        if not self._authorized(request):
            return _json({"error_code": "INVALID_API_KEY", "message": "API key is invalid"}, 401)
        try:
            body = decode_json_exact(await request.read())
            amount = Decimal(body["amount"])
            currency, channel, reference = str(body["currency"]), str(body["channel_code"]), str(body["reference_id"])
        except (msgspec.DecodeError, KeyError, TypeError, ArithmeticError):
            return _json({"error_code": "API_VALIDATION_ERROR", "message": "invalid request"}, 400)
        if amount == 10100:
            return _json({"error_code": "CHANNEL_NOT_ACTIVATED", "message": "Channel is not activated"}, 403)
        charge_id = new_id("ewc_", 24)
        checkout = f"https://ewallet-mock-connector.xendit.co/v1/ewallet_connector/checkouts?token={charge_id}"
        charge = {
            "id": charge_id,
            "business_id": "5f218745736e619164dc8608",
            "reference_id": reference,
            "status": "PENDING",
            "currency": currency,
            "charge_amount": amount,
            "capture_amount": amount,
            "refunded_amount": None,
            "checkout_method": body.get("checkout_method", "ONE_TIME_PAYMENT"),
            "channel_code": channel,
            "channel_properties": body.get("channel_properties") or {},
            "actions": {
                "desktop_web_checkout_url": checkout,
                "mobile_web_checkout_url": checkout,
                "mobile_deeplink_checkout_url": None,
                "qr_checkout_string": None,
            },
            "is_redirect_required": True,
            "callback_url": "",
            "created": _now(),
            "updated": _now(),
            "voided_at": None,
            "capture_now": True,
            "failure_code": None,
            "metadata": body.get("metadata"),
            "_decision": self.sim.decide(self.name, "USER_DECLINED_PAYMENT"),
            "_refunded": Decimal(0),
            "_key": request.headers.get("Idempotency-Key"),
        }
        self.charges[charge_id] = charge
        if self.sim.knobs(self.name).auto_complete:
            self.sim.schedule(0.0, lambda: self._finish(charge_id, None))
        return _json(self._view(charge), 202)

    def _finish(self, charge_id: str, body: dict[str, Any] | None) -> dict[str, Any]:
        charge = self.charges[charge_id]
        if charge["status"] == "PENDING":
            wanted = (body or {}).get("status")
            code = charge["_decision"] if wanted is None else None
            if wanted == "failed":
                code = str((body or {}).get("code") or "USER_DECLINED_PAYMENT")
            charge["status"] = "FAILED" if code else "SUCCEEDED"
            charge["failure_code"] = code
            charge["updated"] = _now()
            if not code:
                # The customer paid in the wallet: a sale, recorded when it happens.
                self._record("authorize", charge, charge["charge_amount"], charge["_key"], captured=True)
            self._notify(charge)
        # Admin answers are plain JSON: amounts as strings, never floats.
        return msgspec.to_builtins(self._view(charge))

    async def complete(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """Admin: the customer paid (``succeeded``), failed (``failed`` + ``code``), or, with no status, the draw."""
        if ref not in self.charges:
            raise KeyError(ref)
        return self._finish(ref, body)

    async def get(self, request: web.Request) -> web.Response:
        """``GET /ewallets/charges/{id}``."""
        charge = self.charges.get(request.match_info["id"])
        if charge is None:
            return _json({"error_code": "DATA_NOT_FOUND", "message": "Charge not found"}, 404)
        return _json(self._view(charge))

    async def refund(self, request: web.Request) -> web.Response:
        """``POST /ewallets/charges/{id}/refunds`` (GrabPay refunds complete at once here)."""
        charge = self.charges.get(request.match_info["id"])
        if charge is None:
            return _json({"error_code": "DATA_NOT_FOUND", "message": "Charge not found"}, 404)
        try:
            amount = Decimal(decode_json_exact(await request.read())["amount"])
        except (msgspec.DecodeError, KeyError, TypeError, ArithmeticError):
            return _json({"error_code": "API_VALIDATION_ERROR", "message": "invalid request"}, 400)
        if charge["status"] not in {"SUCCEEDED", "REFUNDED"} or charge["_refunded"] + amount > charge["charge_amount"]:
            return _json({"error_code": "INELIGIBLE_TRANSACTION", "message": "Charge cannot be refunded"}, 400)
        charge["_refunded"] += amount
        charge["refunded_amount"] = charge["_refunded"]
        refund_id = new_id("ewr_", 24)
        self._record("refund", charge, amount, request.headers.get("Idempotency-Key"), object_id=refund_id)
        if charge["_refunded"] == charge["charge_amount"]:
            charge["status"] = "REFUNDED"
        return _json(
            {
                "id": refund_id,
                "charge_id": charge["id"],
                "status": "SUCCEEDED",
                "currency": charge["currency"],
                "channel_code": charge["channel_code"],
                "capture_amount": charge["capture_amount"],
                "refund_amount": amount,
                "reason": "REQUESTED_BY_CUSTOMER",
                "failure_code": None,
                "created": _now(),
                "updated": _now(),
            }
        )
