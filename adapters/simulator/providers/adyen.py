"""Simulated Adyen Checkout v71: /payments, captures, cancels, refunds, HMAC-signed notifications."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from adapters.adyen import hmac_signature
from adapters.adyen.transformers import REFUSAL_MAP, from_adyen_value
from adapters.simulator.providers import new_id

if TYPE_CHECKING:
    from adapters.simulator.books import MovementKind
    from adapters.simulator.server import Simulator

DEFAULT_HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
_MOVEMENTS: dict[str, MovementKind] = {"captures": "capture", "cancels": "void", "refunds": "refund"}
_REQUIRED = ("amount", "merchantAccount", "paymentMethod", "reference", "returnUrl")


def _psp() -> str:
    return new_id("", 16).upper()


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"status": status, "errorCode": code, "message": message, "errorType": "validation"}, status=status
    )


class AdyenSim:
    """Stateful Adyen payments and modifications."""

    name = "adyen"

    def __init__(self, sim: Simulator) -> None:
        """Bind to the simulator."""
        self.sim = sim
        self.payments: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        """Forget everything."""
        self.payments.clear()

    def routes(self) -> list[web.RouteDef]:
        """Adyen's endpoints under ``/adyen/v71``."""
        p = "/adyen/v71"
        return [
            web.post(f"{p}/payments", self.payments_call),
            web.post(f"{p}/payments/{{psp}}/captures", self.captures),
            web.post(f"{p}/payments/{{psp}}/cancels", self.cancels),
            web.post(f"{p}/payments/{{psp}}/refunds", self.refunds),
        ]

    def notify(
        self,
        event_code: str,
        psp: str,
        original: str | None,
        payment: dict[str, Any],
        amount: dict[str, Any],
        success: bool,
        reason: str = "",
        extra: dict[str, str] | None = None,
    ) -> None:
        """Send one signed notification item."""
        item: dict[str, Any] = {
            "additionalData": dict(extra or {}),
            "amount": amount,
            "eventCode": event_code,
            "eventDate": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "merchantAccountCode": payment["merchantAccount"],
            "merchantReference": payment["reference"],
            "paymentMethod": payment["method"],
            "pspReference": psp,
            "reason": reason,
            "success": "true" if success else "false",
        }
        if original:
            item["originalReference"] = original
        item["additionalData"]["hmacSignature"] = hmac_signature(self.sim.secret(self.name, DEFAULT_HMAC_KEY), item)
        payload = msgspec.json.encode({"live": "false", "notificationItems": [{"NotificationRequestItem": item}]})

        def deliver() -> tuple[bytes, dict[str, str]]:
            return payload, {"Content-Type": "application/json"}

        self.sim.emit(self.name, deliver)

    def _record(
        self,
        kind: MovementKind,
        payment: dict[str, Any],
        value: int,
        *,
        object_id: str | None = None,
        captured: bool = False,
        idempotency_key: str | None,
    ) -> None:
        # Books are in ISO minor units: convert back with the adapter's own exponent table.
        currency = str(payment["amount"]["currency"]).upper()
        self.sim.books.record(
            self.name,
            kind,
            object_id=object_id or payment["psp"],
            amount=from_adyen_value(int(value), currency),
            currency=currency,
            payment_id=payment.get("payment_id"),
            captured=captured,
            idempotency_key=idempotency_key,
        )

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        if not request.headers.get("X-API-Key"):
            return web.json_response(
                {
                    "status": 401,
                    "errorCode": "000",
                    "message": "HTTP Status Response - Unauthorized",
                    "errorType": "security",
                },
                status=401,
            )
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            return _error(400, "702", "Structure of request body is invalid")
        if not isinstance(body, dict):
            return _error(400, "702", "Structure of request body is invalid")
        return body

    async def payments_call(self, request: web.Request) -> web.Response:
        """``POST /payments``."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        for field in _REQUIRED:
            if field not in body:
                return _error(422, "130", f"Required field '{field}' is not provided.")
        amount = body["amount"]
        method = body["paymentMethod"].get("type", "scheme")
        psp = _psp()
        payment = {
            "psp": psp,
            "amount": amount,
            "merchantAccount": body["merchantAccount"],
            "reference": body["reference"],
            "method": method,
            "captured": 0,
            "refunded": 0,
            "status": "new",
            "manual": (body.get("additionalData") or {}).get("manualCapture") == "true",
            "payment_id": (body.get("metadata") or {}).get("payment_id") or body.get("merchantOrderReference"),
        }
        self.payments[psp] = payment
        code = self.sim.decide(self.name, "2")
        if method == "sepadirectdebit":
            # SEPA DD: Received now, AUTHORISATION notification later.
            payment["status"] = "received"
            if self.sim.knobs(self.name).auto_complete:
                self.sim.schedule(0.0, lambda: self._finish(psp, code))
            return web.json_response(
                {
                    "pspReference": psp,
                    "resultCode": "Received",
                    "amount": amount,
                    "merchantReference": body["reference"],
                }
            )
        if code is not None:
            payment["status"] = "refused"
            reason = REFUSAL_MAP.get(code, ("Refused", None))[0]
            self.notify("AUTHORISATION", psp, None, payment, amount, False, reason, {"refusalReasonCode": code})
            return web.json_response(
                {
                    "pspReference": psp,
                    "resultCode": "Refused",
                    "refusalReason": reason,
                    "refusalReasonCode": code,
                    "merchantReference": body["reference"],
                }
            )
        payment["status"] = "authorised"
        if not payment["manual"]:
            payment["captured"] = amount["value"]
        self._record(
            "authorize",
            payment,
            amount["value"],
            captured=not payment["manual"],
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        self.notify("AUTHORISATION", psp, None, payment, amount, True)
        return web.json_response(
            {
                "pspReference": psp,
                "resultCode": "Authorised",
                "amount": amount,
                "merchantReference": body["reference"],
                "additionalData": {"authCode": "065696"},
            }
        )

    def _finish(self, psp: str, code: str | None) -> dict[str, Any]:
        payment = self.payments[psp]
        if payment["status"] != "received":
            return {"pspReference": psp, "status": payment["status"]}
        if code is None:
            payment["status"] = "authorised"
            payment["captured"] = payment["amount"]["value"]
            self._record("authorize", payment, payment["amount"]["value"], captured=True, idempotency_key=None)
            self.notify("AUTHORISATION", psp, None, payment, payment["amount"], True)
        else:
            payment["status"] = "refused"
            self.notify(
                "AUTHORISATION",
                psp,
                None,
                payment,
                payment["amount"],
                False,
                REFUSAL_MAP.get(code, ("Refused", None))[0],
                {"refusalReasonCode": code},
            )
        return {"pspReference": psp, "status": payment["status"]}

    async def complete(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """Admin: finish a ``Received`` payment (``{"status": "succeeded"}`` or a refusal code)."""
        if ref not in self.payments:
            raise KeyError(ref)
        ok = body.get("status", "succeeded") == "succeeded"
        return self._finish(ref, None if ok else str(body.get("code", "2")))

    async def _modification(self, request: web.Request, kind: str) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if "merchantAccount" not in body:
            return _error(422, "130", "Required field 'merchantAccount' is not provided.")
        psp = request.match_info["psp"]
        payment = self.payments.get(psp)
        if payment is None:
            return _error(422, "167", "Original pspReference required for this operation")
        amount = body.get("amount") or payment["amount"]
        if kind != "cancels" and "amount" not in body:
            return _error(422, "130", "Required field 'amount' is not provided.")
        mod = _psp()
        value = int(amount.get("value", 0))
        ok, reason = self._apply(kind, payment, value)
        if ok:
            self._record(
                _MOVEMENTS[kind],
                payment,
                payment["amount"]["value"] if kind == "cancels" else value,
                object_id=mod,
                idempotency_key=request.headers.get("Idempotency-Key"),
            )
        event = {"captures": "CAPTURE", "cancels": "CANCELLATION", "refunds": "REFUND"}[kind]
        # As at Adyen, the answer is only "received"; success or failure comes by notification.
        self.notify(event, mod, psp, payment, amount, ok, reason)
        answer = {
            "merchantAccount": body["merchantAccount"],
            "paymentPspReference": psp,
            "pspReference": mod,
            "status": "received",
        }
        if kind != "cancels":
            answer["amount"] = amount
        if body.get("reference"):
            answer["reference"] = body["reference"]
        return web.json_response(answer, status=201)

    @staticmethod
    def _apply(kind: str, payment: dict[str, Any], value: int) -> tuple[bool, str]:
        authorised = payment["amount"]["value"]
        if payment["status"] != "authorised":
            return False, f"Payment is {payment['status']}"
        if kind == "captures":
            if payment["captured"] + value > authorised:
                return False, "Insufficient amount to capture"
            payment["captured"] += value
        elif kind == "cancels":
            if payment["captured"]:
                return False, "Payment already captured"
            payment["status"] = "cancelled"
        else:
            if payment["refunded"] + value > payment["captured"]:
                return False, "Insufficient in-process funds on account"
            payment["refunded"] += value
        return True, ""

    async def captures(self, request: web.Request) -> web.Response:
        """``POST /payments/{psp}/captures``."""
        return await self._modification(request, "captures")

    async def cancels(self, request: web.Request) -> web.Response:
        """``POST /payments/{psp}/cancels``."""
        return await self._modification(request, "cancels")

    async def refunds(self, request: web.Request) -> web.Response:
        """``POST /payments/{psp}/refunds``."""
        return await self._modification(request, "refunds")
