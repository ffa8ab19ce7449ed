"""Turning a provider's answer into the payment's status, decline and journal transaction.

Shared by the live authorization path and by recovery, so an attempt settles the same way
whether its answer arrived in time or was fetched later with a status call.
"""

from __future__ import annotations

from adapters.base import Outcome, ProviderResult
from switch.ledger import postings
from switch.ledger.postings import JournalTransaction
from switch.ledger.writer import PaymentInsert
from switch.payments.model import DeclineOut, Payment
from switch.routing.plan import DECLINE_CATEGORY

STATUS_BY_OUTCOME = {
    Outcome.DECLINED_HARD: "declined",
    Outcome.DECLINED_SOFT: "declined",
    Outcome.TECHNICAL: "failed",
    Outcome.REQUIRES_ACTION: "requires_action",
    Outcome.PENDING: "pending",
    Outcome.UNKNOWN: "pending",
}


def apply_outcome(merchant_id: str, payment: Payment, result: ProviderResult) -> list[JournalTransaction]:
    """Set the payment's status, decline and next action from ``result``; return its postings.

    An approval books a hold (manual capture, or a payment held for review) or a sale (automatic
    capture); anything else moves no money.
    """
    payment.provider_reference = result.provider_reference or payment.provider_reference
    payment.pending_reason = pending_reason(result)
    if result.outcome is Outcome.APPROVED:
        payment.decline = None
        payment.next_action = None
        held = held_for_review(payment)
        automatic = payment.capture == "automatic" and not held
        payment.status = "in_review" if held else "captured" if automatic else "authorized"
        payment.amount_captured = payment.amount if automatic else 0
        template = postings.sale if automatic else postings.authorize_hold
        return [
            template(
                merchant_id=merchant_id,
                payment_id=payment.id,
                provider=payment.provider or "unknown",
                currency=payment.currency,
                amount=payment.amount,
                created=payment.created,
            )
        ]
    payment.status = STATUS_BY_OUTCOME[result.outcome]
    category = DECLINE_CATEGORY.get(result.outcome)
    payment.decline = (
        DeclineOut(
            code=result.code or "declined",
            category=category,
            message=result.message or "The payment was declined.",
        )
        if category is not None
        else None
    )
    payment.next_action = result.next_action
    return []


def held_for_review(payment: Payment) -> bool:
    """Whether risk sent the payment to review: authorized only, captured once a person approves."""
    return payment.risk is not None and payment.risk.get("decision") == "review"


def pending_reason(result: ProviderResult) -> str | None:
    """Why a payment with this outcome is ``pending``, or None when it is not pending."""
    if result.outcome is Outcome.UNKNOWN:
        return "provider_outcome_unknown"
    if result.outcome is Outcome.PENDING:
        return "awaiting_customer" if result.next_action else "awaiting_settlement"
    return None


def payment_row(merchant_id: str, payment: Payment, body: bytes) -> PaymentInsert:
    """The payments row of a newly settled payment."""
    return PaymentInsert(
        id=payment.id,
        merchant_id=merchant_id,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        amount_captured=payment.amount_captured,
        amount_refunded=0,
        capture_method=payment.capture,
        capture_closed=payment.capture == "automatic" and payment.status == "captured",
        provider=payment.provider,
        provider_reference=payment.provider_reference,
        body=body.decode(),
        reference=payment.reference,
        created=payment.created,
    )
