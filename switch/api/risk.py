"""``/v1/risk/rules``: the merchant's versioned risk rule document, its rollback, and the backtest."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post, put

from switch.api.auth import authenticate
from switch.api.bodies import decode_body
from switch.api.errors import ApiError
from switch.api.openapi import operation_with_body
from switch.payments.history import HistoryReader, PeriodError
from switch.risk.backtest import backtest
from switch.risk.rules import (
    PLATFORM_DEFAULTS,
    CompiledRules,
    DocumentError,
    RiskRules,
    parse_rules,
    rules_to_builtins,
)
from switch.stores.documents import UnknownVersion, VersionedDocuments

_JSON = "application/json"
_MAX_DOCUMENT_BYTES = 256 * 1024
_UNIX = Annotated[int, msgspec.Meta(ge=0, le=2**40)]


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/risk/rules/rollback`` body."""

    version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class BacktestRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/risk/rules/backtest`` body: a proposed document's ``rules`` and a period."""

    rules: list[Any]
    from_: _UNIX = msgspec.field(name="from")
    to: _UNIX


def _answer(body: dict[str, Any], status_code: int = 200) -> Response[bytes]:
    return Response(content=json.dumps(body).encode(), status_code=status_code, media_type=_JSON)


def _defaults_beneath(document: RiskRules | None) -> list[dict[str, Any]]:
    """The platform defaults still in force beneath ``document`` (not replaced or disabled by it)."""
    named = {rule.name for rule in document.rules} if document is not None else set()
    return [msgspec.to_builtins(rule) for rule in PLATFORM_DEFAULTS if rule.name not in named]


def _shown(version: int, body: dict[str, Any], *, active: bool) -> dict[str, Any]:
    return {"object": "risk_rules", "version": version, "active": active, **body}


def _documents(request: Request) -> VersionedDocuments[CompiledRules]:
    return request.app.state.risk_documents  # type: ignore[no-any-return]


def _invalid(exc: DocumentError) -> ApiError:
    return ApiError(400, "invalid_request_error", "parameter_invalid", exc.message, exc.param)


class RiskRulesController(Controller):
    """The risk rule document: read, replace, list versions, roll back, backtest."""

    path = "/v1/risk/rules"
    tags = ["risk"]

    @get("", summary="Retrieve the active risk rule document")
    async def get_rules(self, request: Request) -> Response[bytes]:
        """The active document with its ``version`` (0: none stored) and the defaults beneath it."""
        merchant = await authenticate(request)
        documents = _documents(request)
        head = await documents.head(merchant.id)
        if head.active is None:
            shown = _shown(0, {"rules": []}, active=True)
            shown["defaults"] = _defaults_beneath(None)
            return _answer(shown)
        stored = await documents.stored(merchant.id, head.active_version)
        shown = _shown(stored.version, stored.body, active=True)
        shown["defaults"] = _defaults_beneath(parse_rules(stored.body))
        return _answer(shown)

    @put("", summary="Store a new risk rule document version", operation_class=operation_with_body(RiskRules))
    async def put_rules(self, request: Request) -> Response[bytes]:
        """Validate and keep a new version, active at once on every worker."""
        merchant = await authenticate(request)
        body = await request.body()
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise ApiError(400, "invalid_request_error", "parameter_invalid", "the rule document is too large", None)
        if not body.strip():
            raise ApiError(400, "invalid_request_error", "parameter_missing", "a JSON rule document is required")
        try:
            document = parse_rules(body)
        except DocumentError as exc:
            raise _invalid(exc) from None
        # Stored with every parameter explicit, so a later default change never alters a version.
        stored = rules_to_builtins(document)
        version = await _documents(request).put(merchant.id, stored)
        shown = _shown(version, stored, active=True)
        shown["defaults"] = _defaults_beneath(document)
        return _answer(shown)

    @get("/versions", summary="List the kept risk rule document versions, newest first")
    async def list_versions(self, request: Request) -> Response[bytes]:
        """Every kept version with whether it is the active one."""
        merchant = await authenticate(request)
        documents = _documents(request)
        head = await documents.head(merchant.id)
        data = []
        for stored in await documents.versions(merchant.id):
            item = _shown(stored.version, stored.body, active=stored.version == head.active_version)
            item["created"] = stored.created
            data.append(item)
        return _answer({"object": "list", "data": data, "has_more": False})

    @post(
        "/rollback",
        status_code=200,
        summary="Make an earlier risk rule version active again",
        operation_class=operation_with_body(RollbackRequest),
    )
    async def rollback(self, request: Request) -> Response[bytes]:
        """Activate a kept version (no new version is created)."""
        merchant = await authenticate(request)
        payload = decode_body(await request.body(), RollbackRequest)
        try:
            stored = await _documents(request).activate(merchant.id, payload.version)
        except UnknownVersion:
            raise ApiError(
                404,
                "invalid_request_error",
                "resource_missing",
                f"no risk rule version {payload.version}",
                "version",
            ) from None
        shown = _shown(stored.version, stored.body, active=True)
        shown["defaults"] = _defaults_beneath(parse_rules(stored.body))
        return _answer(shown)

    @post(
        "/backtest",
        status_code=200,
        summary="Replay the merchant's payments of a period against a proposed rule document",
        operation_class=operation_with_body(BacktestRequest),
    )
    async def run_backtest(self, request: Request) -> Response[bytes]:
        """Count what the proposed rules (over the platform defaults) would have decided; moves no money."""
        merchant = await authenticate(request)
        body = await request.body()
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise ApiError(400, "invalid_request_error", "parameter_invalid", "the rule document is too large", None)
        payload = decode_body(body, BacktestRequest)
        try:
            document = parse_rules({"rules": payload.rules})
        except DocumentError as exc:
            raise _invalid(exc) from None
        reader: HistoryReader = request.app.state.risk_history
        try:
            history = await reader.load(merchant.id, payload.from_, payload.to)
        except PeriodError as exc:
            raise ApiError(400, "invalid_request_error", "parameter_invalid", exc.message, exc.param) from None
        # Up to 100,000 evaluations: off the event loop, so the worker keeps serving meanwhile.
        report = await asyncio.to_thread(backtest, document, history)
        return _answer(
            {"object": "risk_backtest", "from": payload.from_, "to": payload.to, **msgspec.to_builtins(report)}
        )
