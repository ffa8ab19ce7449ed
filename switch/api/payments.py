"""``/v1/payments`` and ``/v1/refunds``: decode, authenticate, delegate to the payment service."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from switch.api.auth import authenticate
from switch.api.errors import ApiError, from_decode_error
from switch.api.openapi import link_to, operation_answering, operation_with_body
from switch.payments.idempotency import IdempotencyRequest
from switch.payments.model import CaptureCreate, Payment, PaymentCreate, Refund, RefundCreate, VoidCreate
from switch.payments.service import PaymentService
from switch.payments.service import Response as ServiceResponse

T = TypeVar("T")

_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls) for cls in (PaymentCreate, CaptureCreate, VoidCreate, RefundCreate)
}
_JSON = "application/json"
_ID = Annotated[str, Parameter(max_length=255)]
_PAYMENT = "/v1/payments/{payment_id}"
# OpenAPI links: what can be done next with the payment or refund a response names.
_PAYMENT_LINKS = {
    "capture": link_to("POST", _PAYMENT + "/capture", payment_id="$response.body#/id"),
    "void": link_to("POST", _PAYMENT + "/void", payment_id="$response.body#/id"),
    "refund": link_to("POST", _PAYMENT + "/refunds", payment_id="$response.body#/id"),
    "read": link_to("GET", _PAYMENT, payment_id="$response.body#/id"),
}
_REFUND_LINKS = {
    "read": link_to("GET", "/v1/refunds/{refund_id}", refund_id="$response.body#/id"),
    "refund_again": link_to("POST", _PAYMENT + "/refunds", payment_id="$response.body#/payment"),
}


def _decode(body: bytes, cls: type[T], *, empty_ok: bool) -> T:
    if not body.strip():
        if empty_ok:
            return cls()
        raise ApiError(400, "invalid_request_error", "parameter_missing", "a JSON request body is required", None)
    try:
        return _DECODERS[cls].decode(body)
    except msgspec.DecodeError as exc:
        raise from_decode_error(exc) from None


def _idempotency(request: Request, merchant_id: str, body: bytes) -> IdempotencyRequest | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not (1 <= len(key) <= 255) or not key.isprintable():
        raise ApiError(
            400,
            "invalid_request_error",
            "idempotency_key_invalid",
            "Idempotency-Key must be 1 to 255 printable characters",
            None,
        )
    return IdempotencyRequest.build(merchant_id, key, f"{request.method} {request.scope['path']}", body)


def _respond(result: ServiceResponse) -> Response[bytes]:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return Response(content=result.body, status_code=result.status_code, media_type=_JSON, headers=headers)


def _json(body: bytes) -> Response[bytes]:
    return Response(content=body, status_code=200, media_type=_JSON)


class PaymentController(Controller):
    """Payments: authorize, read, list, capture, void, refund."""

    path = "/v1"
    tags = ["payments"]

    @post(
        "/payments",
        status_code=201,
        summary="Authorize a payment",
        operation_class=operation_with_body(PaymentCreate, answer=Payment, links=_PAYMENT_LINKS),
    )
    async def create_payment(self, request: Request) -> Response[bytes]:
        """Authorize a payment; ``capture: automatic`` (default) also captures it.

        Body: ``PaymentCreate``. Answers 201 with the payment, also when declined.
        """
        merchant = await authenticate(request)
        body = await request.body()
        payload = _decode(body, PaymentCreate, empty_ok=False)
        service: PaymentService = request.app.state.payments
        return _respond(await service.create_payment(merchant, payload, _idempotency(request, merchant.id, body)))

    @get("/payments/{payment_id:str}", summary="Retrieve a payment", operation_class=operation_answering(Payment))
    async def get_payment(self, request: Request, payment_id: _ID) -> Response[bytes]:
        """Return one payment of the authenticated merchant (404 for anyone else's)."""
        merchant = await authenticate(request)
        service: PaymentService = request.app.state.payments
        return _json(await service.get_payment(merchant, payment_id))

    @get("/payments", summary="List payments, newest first")
    async def list_payments(
        self,
        request: Request,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 10,
        starting_after: Annotated[str | None, Parameter(max_length=64)] = None,
    ) -> Response[bytes]:
        """Return ``{"object": "list", "data": [...], "has_more": ...}``."""
        merchant = await authenticate(request)
        service: PaymentService = request.app.state.payments
        return _json(await service.list_payments(merchant, limit, starting_after))

    @post(
        "/payments/{payment_id:str}/capture",
        status_code=200,
        summary="Capture a payment",
        operation_class=operation_with_body(CaptureCreate, answer=Payment, links=_PAYMENT_LINKS),
    )
    async def capture_payment(self, request: Request, payment_id: _ID) -> Response[bytes]:
        """Capture all (no ``amount``) or part of an authorization; ``final: true`` releases the rest."""
        merchant = await authenticate(request)
        body = await request.body()
        payload = _decode(body, CaptureCreate, empty_ok=True)
        service: PaymentService = request.app.state.payments
        idem = _idempotency(request, merchant.id, body)
        return _respond(await service.capture(merchant, payment_id, payload, idem))

    @post(
        "/payments/{payment_id:str}/void",
        status_code=200,
        summary="Void an authorization",
        operation_class=operation_with_body(VoidCreate, answer=Payment, links=_PAYMENT_LINKS),
    )
    async def void_payment(self, request: Request, payment_id: _ID) -> Response[bytes]:
        """Release an uncaptured authorization."""
        merchant = await authenticate(request)
        body = await request.body()
        payload = _decode(body, VoidCreate, empty_ok=True)
        service: PaymentService = request.app.state.payments
        return _respond(await service.void(merchant, payment_id, payload, _idempotency(request, merchant.id, body)))

    @post(
        "/payments/{payment_id:str}/refunds",
        status_code=201,
        summary="Refund a payment",
        operation_class=operation_with_body(RefundCreate, answer=Refund, links=_REFUND_LINKS),
    )
    async def refund_payment(self, request: Request, payment_id: _ID) -> Response[bytes]:
        """Refund part or all of the captured amount; answers the refund."""
        merchant = await authenticate(request)
        body = await request.body()
        payload = _decode(body, RefundCreate, empty_ok=True)
        service: PaymentService = request.app.state.payments
        return _respond(await service.refund(merchant, payment_id, payload, _idempotency(request, merchant.id, body)))

    @get("/refunds/{refund_id:str}", summary="Retrieve a refund", operation_class=operation_answering(Refund))
    async def get_refund(self, request: Request, refund_id: _ID) -> Response[bytes]:
        """Return one refund of the authenticated merchant."""
        merchant = await authenticate(request)
        service: PaymentService = request.app.state.payments
        return _json(await service.get_refund(merchant, refund_id))


# Documented in the OpenAPI components so clients see the shapes the raw handlers exchange.
DOCUMENTED_SCHEMAS = (PaymentCreate, CaptureCreate, VoidCreate, RefundCreate, Payment, Refund)
