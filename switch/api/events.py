"""``/v1/webhook_endpoints`` and ``/v1/events``: where merchants receive events, and the event log."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter

from switch.api.auth import authenticate
from switch.api.errors import ApiError, from_decode_error
from switch.api.openapi import operation_with_body
from switch.events.endpoints import AnchorMissing, Endpoint, EventLog, encode
from switch.events.outbox import EVENT_TYPES
from switch.vault.redaction import contains_pan

_JSON = "application/json"
_ID = Annotated[str, Parameter(max_length=255)]
_ID_SHAPE = re.compile(r"[A-Za-z0-9_]{1,64}")
EventName = Literal[tuple(sorted(EVENT_TYPES | {"*"}))]  # type: ignore[valid-type]


class WebhookEndpointCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/webhook_endpoints`` body: where to send which events (``*`` for all)."""

    url: Annotated[str, msgspec.Meta(max_length=2048, pattern="^https?://[^\\s\x00]+$")]
    events: Annotated[list[EventName], msgspec.Meta(min_length=1, max_length=50)]
    description: Annotated[str, msgspec.Meta(max_length=500, pattern="^[^\x00]*$")] | None = None


_CREATE = msgspec.json.Decoder(WebhookEndpointCreate)


def _missing(kind: str, object_id: str) -> ApiError:
    shown = object_id if _ID_SHAPE.fullmatch(object_id) else "(not a valid id)"
    return ApiError(404, "invalid_request_error", "resource_missing", f"no such {kind}: {shown}", "id")


def _json(body: bytes, status_code: int = 200) -> Response[bytes]:
    return Response(content=body, status_code=status_code, media_type=_JSON)


def _log(request: Request) -> EventLog:
    log: EventLog = request.app.state.events
    return log


class EventController(Controller):
    """Webhook endpoints and events of the authenticated merchant scope."""

    path = "/v1"
    tags = ["events"]

    @post(
        "/webhook_endpoints",
        status_code=201,
        summary="Register a webhook endpoint",
        operation_class=operation_with_body(WebhookEndpointCreate),
    )
    async def create_endpoint(self, request: Request) -> Response[bytes]:
        """Answers 201 with the endpoint and its signing ``secret`` (``whsec_...``), shown only here."""
        merchant = await authenticate(request)
        body = await request.body()
        if not body.strip():
            raise ApiError(400, "invalid_request_error", "parameter_missing", "a JSON request body is required", None)
        try:
            payload = _CREATE.decode(body)
        except msgspec.DecodeError as exc:
            raise from_decode_error(exc) from None
        for param, value in (("url", payload.url), ("description", payload.description)):
            if value is not None and contains_pan(value):
                raise ApiError(
                    400, "invalid_request_error", "card_number_in_text", "this field looks like a card number", param
                )
        endpoint = await _log(request).create_endpoint(merchant.id, payload.url, payload.events, payload.description)
        return _json(encode(endpoint), 201)

    @get("/webhook_endpoints", summary="List webhook endpoints")
    async def list_endpoints(self, request: Request) -> Response[bytes]:
        """Every endpoint of the scope, newest first (without secrets)."""
        merchant = await authenticate(request)
        endpoints = await _log(request).list_endpoints(merchant.id)
        return _json(encode({"object": "list", "data": endpoints, "has_more": False}))

    @get("/webhook_endpoints/{endpoint_id:str}", summary="Retrieve a webhook endpoint")
    async def get_endpoint(self, request: Request, endpoint_id: _ID) -> Response[bytes]:
        """One endpoint of the scope (404 for anyone else's)."""
        merchant = await authenticate(request)
        found: Endpoint | None = None
        if _ID_SHAPE.fullmatch(endpoint_id):
            found = await _log(request).get_endpoint(merchant.id, endpoint_id)
        if found is None:
            raise _missing("webhook endpoint", endpoint_id)
        return _json(encode(found))

    @delete("/webhook_endpoints/{endpoint_id:str}", status_code=200, summary="Delete a webhook endpoint")
    async def delete_endpoint(self, request: Request, endpoint_id: _ID) -> Response[bytes]:
        """Stop sending to it; its undelivered events are dropped for it (they stay in the log)."""
        merchant = await authenticate(request)
        if not (_ID_SHAPE.fullmatch(endpoint_id) and await _log(request).delete_endpoint(merchant.id, endpoint_id)):
            raise _missing("webhook endpoint", endpoint_id)
        return _json(encode({"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}))

    @get("/events", summary="List events, newest first")
    async def list_events(
        self,
        request: Request,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 10,
        starting_after: Annotated[str | None, Parameter(max_length=64)] = None,
    ) -> Response[bytes]:
        """Return ``{"object": "list", "data": [...], "has_more": ...}``, paginated like payments."""
        merchant = await authenticate(request)
        try:
            if starting_after is not None and not _ID_SHAPE.fullmatch(starting_after):
                raise AnchorMissing(starting_after)
            return _json(await _log(request).list_events(merchant.id, limit, starting_after))
        except AnchorMissing:
            raise ApiError(
                400, "invalid_request_error", "resource_missing", "no event to start after", "starting_after"
            ) from None

    @get("/events/{event_id:str}", summary="Retrieve an event")
    async def get_event(self, request: Request, event_id: _ID) -> Response[bytes]:
        """One event of the scope, exactly as delivered."""
        merchant = await authenticate(request)
        body = await _log(request).get_event(merchant.id, event_id) if _ID_SHAPE.fullmatch(event_id) else None
        if body is None:
            raise _missing("event", event_id)
        return _json(body)

    @post("/events/{event_id:str}/redeliver", status_code=202, summary="Deliver an event again")
    async def redeliver(self, request: Request, event_id: _ID) -> Response[bytes]:
        """Queue the event for every subscribed endpoint again; answers how many deliveries were queued."""
        merchant = await authenticate(request)
        queued = await _log(request).redeliver(merchant.id, event_id) if _ID_SHAPE.fullmatch(event_id) else None
        if queued is None:
            raise _missing("event", event_id)
        result: dict[str, Any] = {"id": event_id, "object": "event_redelivery", "queued": queued}
        return _json(encode(result), 202)


DOCUMENTED_SCHEMAS = (WebhookEndpointCreate, Endpoint)
