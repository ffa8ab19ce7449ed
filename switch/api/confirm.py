"""3-D Secure: the merchant's ``POST /v1/payments/{id}/confirm`` and the sandbox's challenge page."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Request, Response, post
from litestar.params import Parameter

from adapters.sandbox import SandboxAdapter
from switch.api.auth import authenticate
from switch.api.bodies import decode_body
from switch.api.errors import ApiError
from switch.api.openapi import operation_with_body
from switch.payments.confirm import PaymentConfirmation

_JSON = "application/json"
_ID = Annotated[str, Parameter(max_length=64, pattern="^[A-Za-z0-9_]+$")]


class ChallengeResult(msgspec.Struct, forbid_unknown_fields=True):
    """What the sandbox's stand-in cardholder did with the challenge."""

    result: Literal["succeeded", "failed"]


@post("/v1/payments/{payment_id:str}/confirm", status_code=200, summary="Confirm a payment after 3-D Secure")
async def confirm_payment(request: Request, payment_id: _ID) -> Response[bytes]:
    """Book what the provider says of a ``requires_action`` payment once the customer authenticated.

    Answers the payment: still ``requires_action`` while the customer has not finished, otherwise
    its settled status. Confirming again is harmless.
    """
    merchant = await authenticate(request)
    confirmations: PaymentConfirmation = request.app.state.confirmations
    body = await confirmations.confirm(merchant, payment_id)
    return Response(content=body, status_code=200, media_type=_JSON)


@post(
    "/sandbox/3ds/{reference:str}",
    status_code=200,
    summary="Sandbox only: complete a 3-D Secure challenge as the cardholder",
    operation_class=operation_with_body(ChallengeResult),
)
async def sandbox_challenge(request: Request, reference: _ID) -> Response[bytes]:
    """Stand in for the cardholder on the sandbox's challenge page: ``{"result": "succeeded"}``."""
    payload = decode_body(await request.body(), ChallengeResult)
    sandbox = request.app.state.adapters.get("sandbox")
    if not isinstance(sandbox, SandboxAdapter) or not sandbox.complete_challenge(
        reference, payload.result == "succeeded"
    ):
        raise ApiError(
            404, "invalid_request_error", "resource_missing", "no open sandbox challenge with that reference"
        )
    return Response(content=b'{"object":"sandbox_challenge","completed":true}', status_code=200, media_type=_JSON)
