"""The manual review queue: payments held ``in_review`` until a person approves or rejects them.

A review is open exactly while its payment's status is ``in_review`` (the authorization path
writes that payment; opening a review writes nothing else). Its id is derived from the payment's
(``pay_X`` -> ``rev_X``). Closing one is one transaction: the payment moves conditionally from
``in_review`` to ``authorized`` (status column, stored body, version bumped; its authorization
hold was booked with it, so the ledger does not change), the closed review row is inserted, and
the merchant events are written. Then, outside that transaction, the payment
service acts as for any authorized payment: an approval captures when the payment's ``capture``
is ``automatic``; a rejection voids.

If that follow-up fails, the review stays closed and the payment stays ``authorized``; the
caller is told so (:class:`FollowUpFailed`), and the same request again retries the follow-up
(an approved review whose automatic capture is still missing, a rejected review whose payment is
still authorized). Until the void of a rejected review succeeds, the authorized payment can also
be captured directly, as any authorized payment can.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable
from typing import Any, Literal

import asyncpg
import msgspec

from switch.errors import PaymentError
from switch.events.outbox import event_row, events_for
from switch.merchants import Merchant
from switch.payments.model import ENCODER, PAYMENT_DECODER, CaptureCreate, VoidCreate
from switch.payments.service import PaymentService
from switch.payments.service import Response as ServiceResponse
from switch.payments.state import IN_REVIEW, PaymentState, leave_review

ReviewStatus = Literal["open", "approved", "rejected"]
STATUSES: tuple[str, ...] = ("open", "approved", "rejected")
_REVIEW_ID = re.compile(r"rev_[A-Za-z0-9]{1,60}")
_ERROR_DECODER = msgspec.json.Decoder(dict[str, dict[str, Any]])


class Review(msgspec.Struct, kw_only=True):
    """The review object of the API (DESIGN section 8), with when and by whom it was closed."""

    id: str
    object: Literal["review"] = "review"
    payment: str
    reason: str
    rules: list[dict[str, Any]]
    status: str
    created: int
    closed: int | None = None
    closed_by: str | None = None


class FollowUpFailed(Exception):
    """The review closed, but the capture (approve) or void (reject) that follows it failed.

    Attributes:
        review: The closed review.
        action: ``capture`` or ``void``.
        code: The failed operation's error code (``provider_unavailable``, ``void_refused_by_provider``).
        message: A sentence saying what holds now and how to retry.
        cause: The operation's refusal when it raised one (its kind gives the HTTP status).
        status_code: The operation's answer when it answered one (a provider's refusal is a 402).
    """

    def __init__(
        self,
        review: Review,
        action: str,
        code: str,
        detail: str,
        *,
        cause: PaymentError | None = None,
        status_code: int | None = None,
    ) -> None:
        """Build the error from the failed operation's refusal or answer."""
        verb = "approve" if action == "capture" else "reject"
        message = (
            f"review {review.id} is {review.status} and payment {review.payment} is authorized, but its {action}"
            f" failed ({code}: {detail}); the payment stays authorized until it succeeds: retry"
            f" POST /v1/reviews/{review.id}/{verb} to retry the {action}"
        )
        super().__init__(message)
        self.review = review
        self.action = action
        self.code = code
        self.message = message
        self.cause = cause
        self.status_code = status_code


class _StoredRisk(msgspec.Struct, kw_only=True):
    rules: list[dict[str, Any]] = msgspec.field(default_factory=list)


class _ReviewedPayment(msgspec.Struct, kw_only=True):
    """What a review shows of its payment's stored object."""

    id: str
    risk: _StoredRisk | None = None
    created: int


_PAYMENT_FIELDS = msgspec.json.Decoder(_ReviewedPayment)


def review_id_for(payment_id: str) -> str:
    """``pay_X`` -> ``rev_X``."""
    return "rev_" + payment_id.partition("_")[2]


def payment_id_for(review_id: str) -> str | None:
    """``rev_X`` -> ``pay_X``, or None when ``review_id`` is not shaped like a review id."""
    if _REVIEW_ID.fullmatch(review_id) is None:
        return None
    return "pay_" + review_id[4:]


def review_rules(risk_rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fired rules that sent a payment to review: enforced, with action ``review``."""
    return [rule for rule in risk_rules if rule.get("action") == "review" and rule.get("mode", "enforce") == "enforce"]


def review_reason(rules: list[dict[str, Any]]) -> str:
    """Why the payment is reviewed: ``sanctions``, ``aml``, else the first review rule's name."""
    if not rules:
        return "risk_review"
    first = str(rules[0].get("name", ""))
    if "sanctions" in first:
        return "sanctions"
    if first.startswith("aml."):
        return "aml"
    return first or "risk_review"


def _open_review(body: str) -> Review:
    payment = _PAYMENT_FIELDS.decode(body)
    rules = review_rules(payment.risk.rules if payment.risk is not None else [])
    return Review(
        id=review_id_for(payment.id),
        payment=payment.id,
        reason=review_reason(rules),
        rules=rules,
        status="open",
        created=payment.created,
    )


def _closed_review(row: asyncpg.Record) -> Review:
    return Review(
        id=review_id_for(row["payment_id"]),
        payment=row["payment_id"],
        reason=row["reason"],
        rules=json.loads(row["rules"]),
        status=row["status"],
        created=row["created"],
        closed=row["closed"],
        closed_by=row["closed_by"],
    )


# Open reviews are the payments in review; closed ones are rows. Both order by (created, payment id),
# and rev_X sorts as pay_X does, so one ordering pages through both.
_SQL_LIST = """
SELECT * FROM (
    SELECT p.id AS payment_id, 'open' AS status, NULL::text AS reason, NULL::text AS rules, p.body::text AS body,
           p.created, NULL::bigint AS closed, NULL::text AS closed_by
    FROM payments p
    WHERE p.merchant_id = $1 AND p.status = 'in_review' AND ($2::text IS NULL OR $2 = 'open')
    UNION ALL
    SELECT r.payment_id, r.status, r.reason, r.rules::text, NULL::text, r.created, r.closed, r.closed_by
    FROM reviews r
    WHERE r.merchant_id = $1 AND ($2::text IS NULL OR r.status = $2)
) AS x
WHERE $3::bigint IS NULL OR (x.created, x.payment_id) < ($3, $4::text)
ORDER BY x.created DESC, x.payment_id DESC
LIMIT $5
"""

_SQL_ONE = """
SELECT p.status AS payment_status, p.body::text AS body, r.payment_id, r.status, r.reason, r.rules::text AS rules,
       r.created, r.closed, r.closed_by
FROM payments p LEFT JOIN reviews r ON r.payment_id = p.id
WHERE p.id = $1 AND p.merchant_id = $2
"""

_SQL_LOCK = (
    "SELECT body::text AS body, status, amount, version, capture_method FROM payments"
    " WHERE id = $1 AND merchant_id = $2 FOR UPDATE"
)

_SQL_LEAVE_REVIEW = (
    "UPDATE payments SET status = $3, body = $4::json, version = version + 1"
    " WHERE id = $1 AND version = $2 AND status = 'in_review'"
)

_SQL_INSERT_REVIEW = (
    "INSERT INTO reviews (id, merchant_id, payment_id, status, reason, rules, created, closed, closed_by)"
    " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9)"
)

# As the ledger writer does: events in order, fanned out to the subscribed endpoints at once.
_SQL_EVENTS = """
WITH events_in AS (
    INSERT INTO events (id, merchant_id, type, payment_id, body, created)
    SELECT id, m, t, p, b::json, cr
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
         WITH ORDINALITY AS u(id, m, t, p, b, cr, n)
    ORDER BY n
    RETURNING seq, id, merchant_id, type, payment_id, created
)
INSERT INTO event_deliveries (endpoint_id, event_id, seq, ordering_key, next_attempt, created)
SELECT w.id, e.id, e.seq, coalesce(e.payment_id, e.id), e.created, e.created
FROM events_in AS e JOIN webhook_endpoints AS w
  ON w.merchant_id = e.merchant_id AND (e.type = ANY(w.events) OR '*' = ANY(w.events))
"""


def _missing(review_id: str) -> PaymentError:
    shown = review_id if _REVIEW_ID.fullmatch(review_id) else "(not a valid id)"
    return PaymentError("not_found", "resource_missing", f"no such review: {shown}", "id")


def _already_closed(review: Review) -> PaymentError:
    return PaymentError("state", "review_already_closed", f"review {review.id} is already {review.status}")


class ReviewService:
    """Lists, reads and closes the merchant's reviews."""

    def __init__(self, pool: asyncpg.Pool, payments: PaymentService) -> None:
        """Read and close through ``pool``; capture and void through ``payments``."""
        self._pool = pool
        self._payments = payments

    async def list_reviews(
        self, merchant: Merchant, status: str | None, limit: int, starting_after: str | None
    ) -> tuple[list[Review], bool]:
        """A page of reviews, newest first, and whether more follow.

        Raises:
            PaymentError: 400 ``resource_missing`` when ``starting_after`` names no review of the merchant.
        """
        anchor_created: int | None = None
        anchor_payment: str | None = None
        if starting_after is not None:
            anchor_payment = payment_id_for(starting_after)
            if anchor_payment is not None:
                anchor_created = await self._pool.fetchval(
                    "SELECT created FROM payments WHERE id = $1 AND merchant_id = $2", anchor_payment, merchant.id
                )
            if anchor_created is None:
                raise PaymentError(
                    "invalid", "resource_missing", f"no review {starting_after!r} to start after", "starting_after"
                )
        rows = await self._pool.fetch(_SQL_LIST, merchant.id, status, anchor_created, anchor_payment, limit + 1)
        reviews = [
            _open_review(row["body"]) if row["status"] == "open" else _closed_review(row) for row in rows[:limit]
        ]
        return reviews, len(rows) > limit

    async def get_review(self, merchant: Merchant, review_id: str) -> Review:
        """One review of the merchant.

        Raises:
            PaymentError: 404 ``resource_missing`` for an unknown review or another merchant's.
        """
        payment_id = payment_id_for(review_id)
        if payment_id is None:
            raise _missing(review_id)
        row = await self._pool.fetchrow(_SQL_ONE, payment_id, merchant.id)
        if row is None:
            raise _missing(review_id)
        if row["payment_id"] is not None:
            return _closed_review(row)
        if row["payment_status"] == IN_REVIEW:
            return _open_review(row["body"])
        raise _missing(review_id)  # a payment that was never in review has no review

    async def approve(self, merchant: Merchant, review_id: str, closed_by: str | None = None) -> Review:
        """Close the review as approved; capture the payment when its ``capture`` is ``automatic``.

        Raises:
            PaymentError: 404 ``resource_missing``; 409 ``review_already_closed``.
            FollowUpFailed: The review is approved but the capture failed (retry approve to retry it).
        """
        review, capture_mode, fresh = await self._close(merchant, review_id, "approved", closed_by)
        # Closed before: only an approval whose automatic capture is still missing is resumed.
        if not fresh and not (review.status == "approved" and capture_mode == "automatic"):
            raise _already_closed(review)
        if capture_mode == "automatic":
            capture = self._payments.capture(merchant, review.payment, CaptureCreate(), None)
            await self._follow_up(review, "capture", capture)
        return review

    async def reject(self, merchant: Merchant, review_id: str, closed_by: str | None = None) -> Review:
        """Close the review as rejected and void the payment.

        Raises:
            PaymentError: 404 ``resource_missing``; 409 ``review_already_closed``.
            FollowUpFailed: The review is rejected but the void failed (retry reject to retry it).
        """
        review, capture_mode, fresh = await self._close(merchant, review_id, "rejected", closed_by)
        # Closed before: only a rejection whose payment is still authorized (its void failed) is resumed.
        if not fresh and not (review.status == "rejected" and capture_mode):
            raise _already_closed(review)
        await self._follow_up(review, "void", self._payments.void(merchant, review.payment, VoidCreate(), None))
        return review

    async def _follow_up(self, review: Review, action: str, running: Awaitable[ServiceResponse]) -> None:
        """Await the capture or void; a refusal or failure becomes :class:`FollowUpFailed`."""
        try:
            response = await running
        except PaymentError as exc:
            raise FollowUpFailed(review, action, exc.code, exc.message, cause=exc) from None
        if response.status_code >= 300:
            error = _ERROR_DECODER.decode(response.body).get("error", {})
            raise FollowUpFailed(
                review,
                action,
                str(error.get("code", f"{action}_failed")),
                str(error.get("message", "")),
                status_code=response.status_code,
            )

    async def _close(
        self, merchant: Merchant, review_id: str, status: str, closed_by: str | None
    ) -> tuple[Review, str, bool]:
        """Move the payment out of review and keep the closed review, in one transaction.

        Returns:
            The review, the payment's capture mode, and True when this call closed it (False: it
            was closed before, and the review is returned as it was closed, with the payment's
            capture mode only when the payment is still ``authorized``, else ``""``).
        """
        payment_id = payment_id_for(review_id)
        if payment_id is None:
            raise _missing(review_id)
        now = int(time.time())
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(_SQL_LOCK, payment_id, merchant.id)
            if row is None:
                raise _missing(review_id)
            if row["status"] != IN_REVIEW:
                closed = await connection.fetchrow(
                    "SELECT payment_id, status, reason, rules::text AS rules, created, closed, closed_by"
                    " FROM reviews WHERE payment_id = $1",
                    payment_id,
                )
                if closed is None:
                    raise _missing(review_id)
                mode = row["capture_method"] if row["status"] == "authorized" else ""
                return _closed_review(closed), mode, False
            payment = PAYMENT_DECODER.decode(row["body"])
            state = leave_review(PaymentState(status=row["status"], amount=row["amount"]))
            payment.status = state.status
            body = ENCODER.encode(payment)
            updated = await connection.execute(
                _SQL_LEAVE_REVIEW, payment_id, row["version"], state.status, body.decode()
            )
            if updated != "UPDATE 1":  # cannot happen under the row lock; never close on a stale read
                raise PaymentError("conflict", "payment_concurrently_modified", f"payment {payment_id} changed; retry")
            opened = _open_review(row["body"])
            review = Review(
                id=opened.id,
                payment=payment_id,
                reason=opened.reason,
                rules=opened.rules,
                status=status,
                created=opened.created,
                closed=now,
                closed_by=closed_by,
            )
            await connection.execute(
                _SQL_INSERT_REVIEW,
                review.id,
                merchant.id,
                payment_id,
                status,
                review.reason,
                json.dumps(review.rules),
                review.created,
                now,
                closed_by,
            )
            events = events_for(
                merchant.id, payment_id, state.status, body, livemode=merchant.livemode, previous_status=IN_REVIEW
            )
            events.append(
                event_row(
                    merchant.id,
                    "review.closed",
                    ENCODER.encode(review),
                    payment_id=payment_id,
                    livemode=merchant.livemode,
                )
            )
            await connection.execute(
                _SQL_EVENTS,
                [event.id for event in events],
                [event.merchant_id for event in events],
                [event.type for event in events],
                [event.payment_id for event in events],
                [event.body for event in events],
                [event.created for event in events],
            )
        return review, row["capture_method"], True


__all__ = [
    "STATUSES",
    "FollowUpFailed",
    "Review",
    "ReviewService",
    "payment_id_for",
    "review_id_for",
    "review_reason",
    "review_rules",
]
