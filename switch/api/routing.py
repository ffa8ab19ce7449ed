"""``/v1/routing``: the merchant's versioned routing config, its rollback, and the dry run."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post, put

from switch.api.auth import authenticate
from switch.api.bodies import decode_body
from switch.api.errors import ApiError
from switch.api.openapi import operation_with_body
from switch.merchants import Merchant
from switch.payments.model import PaymentCreate
from switch.payments.service import PaymentService
from switch.routing.document import DocumentError, RoutingDocument, parse_document, to_builtins
from switch.routing.router import Router
from switch.stores.documents import UnknownVersion

_JSON = "application/json"
_MAX_DOCUMENT_BYTES = 256 * 1024


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/routing/rollback`` body."""

    version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


def _answer(body: dict[str, Any], status_code: int = 200) -> Response[bytes]:
    return Response(content=json.dumps(body).encode(), status_code=status_code, media_type=_JSON)


def _routable_accounts(request: Request, merchant: Merchant) -> list[str]:
    """The accounts a merchant's config may name: its own, as far as this switch has them."""
    adapters = request.app.state.adapters
    return [name for name in merchant.providers if name in adapters]


def _shown(version: int, body: dict[str, Any], *, active: bool) -> dict[str, Any]:
    return {"object": "routing_config", "version": version, "active": active, **body}


class RoutingController(Controller):
    """The routing config: read, replace (or roll out), list versions, roll back, simulate."""

    path = "/v1/routing"
    tags = ["routing"]

    @get("", summary="Retrieve the active routing config")
    async def get_config(self, request: Request) -> Response[bytes]:
        """The active document with its ``version`` (0: none stored, the implied default), and the canary."""
        merchant = await authenticate(request)
        router: Router = request.app.state.router
        head = await router.documents.head(merchant.id)
        if head.active is None:
            implied = router.implied(merchant.providers)
            return _answer(_shown(0, to_builtins(implied.document), active=True))
        shown = _shown(head.active_version, to_builtins(head.active.document), active=True)
        if head.canary is not None:
            shown["canary"] = {
                "version": head.canary_version,
                "percent": head.canary_percent,
                "document": to_builtins(head.canary.document),
            }
        return _answer(shown)

    @put("", summary="Store a new routing config version", operation_class=operation_with_body(RoutingDocument))
    async def put_config(self, request: Request) -> Response[bytes]:
        """Validate and keep a new version; ``rollout.percent`` below 100 makes it a canary first."""
        merchant = await authenticate(request)
        body = await request.body()
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise ApiError(400, "invalid_request_error", "parameter_invalid", "the routing config is too large", None)
        if not body.strip():
            raise ApiError(400, "invalid_request_error", "parameter_missing", "a JSON routing config is required")
        try:
            document = parse_document(body, _routable_accounts(request, merchant))
        except DocumentError as exc:
            raise ApiError(400, "invalid_request_error", "parameter_invalid", exc.message, exc.param) from None
        router: Router = request.app.state.router
        stored = to_builtins(document)
        percent = document.rollout.percent
        version = await router.documents.put(merchant.id, stored, canary_percent=percent if percent < 100 else None)
        head = await router.documents.head(merchant.id)
        shown = _shown(version, stored, active=head.active_version == version)
        if head.canary_version == version:
            shown["canary"] = {"version": version, "percent": head.canary_percent}
        return _answer(shown)

    @get("/versions", summary="List the kept routing config versions, newest first")
    async def list_versions(self, request: Request) -> Response[bytes]:
        """Every kept version with whether it is active or rolling out."""
        merchant = await authenticate(request)
        router: Router = request.app.state.router
        head = await router.documents.head(merchant.id)
        data = []
        for stored in await router.documents.versions(merchant.id):
            item = _shown(stored.version, stored.body, active=stored.version == head.active_version)
            item["canary"] = stored.version == head.canary_version
            item["created"] = stored.created
            data.append(item)
        return _answer({"object": "list", "data": data, "has_more": False})

    @post(
        "/rollback",
        status_code=200,
        summary="Make an earlier version active again",
        operation_class=operation_with_body(RollbackRequest),
    )
    async def rollback(self, request: Request) -> Response[bytes]:
        """Activate a kept version (no new version is created); a running canary stops."""
        merchant = await authenticate(request)
        payload = decode_body(await request.body(), RollbackRequest)
        router: Router = request.app.state.router
        try:
            stored = await router.documents.activate(merchant.id, payload.version)
        except UnknownVersion:
            raise ApiError(
                404,
                "invalid_request_error",
                "resource_missing",
                f"no routing config version {payload.version}",
                "version",
            ) from None
        return _answer(_shown(stored.version, stored.body, active=True))

    @post(
        "/simulate",
        status_code=200,
        summary="Explain how a payment would be routed, moving no money",
        operation_class=operation_with_body(PaymentCreate),
    )
    async def simulate(self, request: Request) -> Response[bytes]:
        """Body: a payment as for ``POST /v1/payments``. Nothing is stored and no provider is called."""
        merchant = await authenticate(request)
        payload = decode_body(await request.body(), PaymentCreate)
        service: PaymentService = request.app.state.payments
        return _answer(await service.simulate_route(merchant, payload))
