"""A payment as the authorization path stores it in an attempt intent, for recovery tests that
write intents themselves (as if the worker had died right after writing one)."""

from __future__ import annotations

import time

from switch.ids import new_id
from switch.payments.model import CardOut, Payment, PaymentMethodOut, RoutingOut


def pending_payment(amount: int = 4200, capture: str = "manual", created: int | None = None) -> Payment:
    """A pending card payment with masked card data, not yet written anywhere."""
    return Payment(
        id=new_id("pay"),
        status="pending",
        amount=amount,
        currency="EUR",
        amount_captured=0,
        amount_refunded=0,
        capture=capture,
        payment_method=PaymentMethodOut(
            type="card",
            card=CardOut(
                brand="visa", bin="424242", last4="4242", exp_month=12, exp_year=2031, token="tok_x", fingerprint="f"
            ),
        ),
        provider=None,
        provider_reference=None,
        routing=RoutingOut(strategy="priority", reason="test", attempts=[]),
        created=int(time.time()) if created is None else created,
    )
