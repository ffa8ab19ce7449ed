"""``/v1/reviews``: the manual review queue (risk, sanctions, AML): list, read, approve, reject."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from switch.api.auth import authenticate
from switch.api.bodies import decode_body
from switch.api.errors import ApiError, error_response, from_payment_error
from switch.api.openapi import operation_with_body
from switch.payments.model import ENCODER
from switch.payments.reviews import STATUSES, FollowUpFailed, Review, ReviewService

_JSON = "application/json"
_ID = Annotated[str, Parameter(max_length=255)]


class ReviewClose(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/reviews/{id}/approve|reject`` body (optional): who decided."""

    closed_by: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern="^[^\x00]*$")] | None = None


def _json(body: bytes) -> Response[bytes]:
    return Response(content=body, status_code=200, media_type=_JSON)


def _query_limit(raw: str | None) -> int:
    if raw is None:
        return 10
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ApiError(
            400, "invalid_request_error", "parameter_invalid", "limit must be an integer from 1 to 100", "limit"
        )
    return int(raw)


def _query_status(raw: str | None) -> str | None:
    if raw is not None and raw not in STATUSES:
        raise ApiError(
            400, "invalid_request_error", "parameter_invalid", f"status must be one of {', '.join(STATUSES)}", "status"
        )
    return raw


def _closer(body: bytes) -> str | None:
    if not body.strip():
        return None
    return decode_body(body, ReviewClose).closed_by


def _follow_up_failed(exc: FollowUpFailed) -> Response[bytes]:
    """The review is closed but the capture or void was not done: say so, with the operation's status."""
    code = f"review_{exc.action}_failed"
    if exc.cause is not None:
        mapped = from_payment_error(exc.cause)
        response = error_response(mapped.status_code, mapped.type, code, exc.message, None)
        if exc.cause.kind == "unavailable":
            response.headers["Retry-After"] = "1"
        return response
    status = exc.status_code or 502
    return error_response(status, "api_error" if status >= 500 else "invalid_request_error", code, exc.message, None)


class ReviewController(Controller):
    """Reviews: a payment held ``in_review`` waits here for a person's decision."""

    path = "/v1/reviews"
    tags = ["reviews"]

    @get("", summary="List reviews, newest first")
    async def list_reviews(
        self,
        request: Request,
        status: Annotated[str | None, Parameter(max_length=20)] = None,
        limit: Annotated[str | None, Parameter(max_length=10)] = None,
        starting_after: Annotated[str | None, Parameter(max_length=64)] = None,
    ) -> Response[bytes]:
        """``{"object": "list", "data": [review, ...], "has_more": ...}``; ``status``: open, approved, rejected."""
        merchant = await authenticate(request)
        service: ReviewService = request.app.state.reviews
        reviews, has_more = await service.list_reviews(
            merchant, _query_status(status), _query_limit(limit), starting_after
        )
        return _json(ENCODER.encode({"object": "list", "data": reviews, "has_more": has_more}))

    @get("/{review_id:str}", summary="Retrieve a review")
    async def get_review(self, request: Request, review_id: _ID) -> Response[bytes]:
        """One review of the authenticated merchant (404 for anyone else's)."""
        merchant = await authenticate(request)
        service: ReviewService = request.app.state.reviews
        return _json(ENCODER.encode(await service.get_review(merchant, review_id)))

    @post(
        "/{review_id:str}/approve",
        status_code=200,
        summary="Approve a review: the payment is authorized, and captured if its capture is automatic",
        operation_class=operation_with_body(ReviewClose),
    )
    async def approve(self, request: Request, review_id: _ID) -> Response[bytes]:
        """Close the review as approved; answers the review (409 ``review_already_closed`` when closed)."""
        merchant = await authenticate(request)
        closed_by = _closer(await request.body())
        service: ReviewService = request.app.state.reviews
        try:
            review: Review = await service.approve(merchant, review_id, closed_by)
        except FollowUpFailed as exc:
            return _follow_up_failed(exc)
        return _json(ENCODER.encode(review))

    @post(
        "/{review_id:str}/reject",
        status_code=200,
        summary="Reject a review: the payment's authorization is voided",
        operation_class=operation_with_body(ReviewClose),
    )
    async def reject(self, request: Request, review_id: _ID) -> Response[bytes]:
        """Close the review as rejected and void the payment; a failed void is retried by rejecting again."""
        merchant = await authenticate(request)
        closed_by = _closer(await request.body())
        service: ReviewService = request.app.state.reviews
        try:
            review: Review = await service.reject(merchant, review_id, closed_by)
        except FollowUpFailed as exc:
            return _follow_up_failed(exc)
        return _json(ENCODER.encode(review))


# Documented in the OpenAPI components: the review object the handlers encode themselves.
DOCUMENTED_SCHEMAS = (Review, ReviewClose)
