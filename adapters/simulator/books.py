"""The simulator's own books: every movement of money it *performed*, kept apart from its answers.

A provider may perform a charge and then stall, answer 500 or drop the connection. Tests of money
safety must compare what the switch shows with what the provider actually did, not with what it
said, so every simulated provider records each performed movement here at the moment it changes
state, before any fault decides what (if anything) to answer.

Each entry is one movement: ``authorize`` (an authorization hold or, with automatic capture, a
sale: ``captured`` tells which), ``capture``, ``void``, ``refund``. ``payment_id`` is the switch's
payment id when the request carried it (metadata, reference), so a test can ask "was this payment
charged at two providers?" without trusting the switch's own records.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Literal

import msgspec

MovementKind = Literal["authorize", "capture", "void", "refund"]


class Movement(msgspec.Struct, kw_only=True):
    """One performed movement of money at a simulated provider.

    Attributes:
        provider: The simulated provider (``stripe``, ``adyen``, ...).
        kind: What was performed.
        object_id: The provider's id of the object acted on (PaymentIntent, PSP reference, order).
        amount: Amount in the provider's wire units converted back to ISO minor units where the
            provider's convention differs (the module that records it knows which).
        currency: ISO 4217 code, upper case.
        payment_id: The switch's payment id, when the request carried it.
        captured: For ``authorize``: True when the money was taken at once (a sale).
        idempotency_key: The key the request carried, if any.
        at: Unix time of the movement.
    """

    provider: str
    kind: MovementKind
    object_id: str
    amount: int
    currency: str
    payment_id: str | None = None
    captured: bool = False
    idempotency_key: str | None = None
    at: float = 0.0


class Books:
    """Append-only record of performed movements, for every simulated provider."""

    def __init__(self) -> None:
        """Start with empty books."""
        self._lock = threading.Lock()
        self.movements: list[Movement] = []

    def record(
        self,
        provider: str,
        kind: MovementKind,
        *,
        object_id: str,
        amount: int,
        currency: str,
        payment_id: str | None = None,
        captured: bool = False,
        idempotency_key: str | None = None,
    ) -> Movement:
        """Record one performed movement and return it."""
        movement = Movement(
            provider=provider,
            kind=kind,
            object_id=object_id,
            amount=amount,
            currency=currency.upper(),
            payment_id=payment_id,
            captured=captured,
            idempotency_key=idempotency_key,
            at=time.time(),
        )
        with self._lock:
            self.movements.append(movement)
        return movement

    def clear(self) -> None:
        """Forget every movement (the simulator's reset)."""
        with self._lock:
            self.movements.clear()

    def for_payment(self, payment_id: str) -> list[Movement]:
        """Every movement recorded against the switch's ``payment_id``, oldest first."""
        with self._lock:
            return [m for m in self.movements if m.payment_id == payment_id]

    def for_object(self, provider: str, object_id: str) -> list[Movement]:
        """Every movement on one provider object, oldest first."""
        with self._lock:
            return [m for m in self.movements if m.provider == provider and m.object_id == object_id]

    def charged_providers(self, payment_id: str) -> set[str]:
        """Providers at which ``payment_id`` was authorized (a hold or a sale)."""
        return {m.provider for m in self.for_payment(payment_id) if m.kind == "authorize"}

    def totals(self, payment_id: str) -> Counter[str]:
        """Sums per kind for ``payment_id``: ``authorized``, ``captured``, ``refunded``, ``voided``.

        A sale counts as both authorized and captured.
        """
        totals: Counter[str] = Counter()
        for m in self.for_payment(payment_id):
            if m.kind == "authorize":
                totals["authorized"] += m.amount
                if m.captured:
                    totals["captured"] += m.amount
            elif m.kind == "capture":
                totals["captured"] += m.amount
            elif m.kind == "refund":
                totals["refunded"] += m.amount
            else:
                totals["voided"] += m.amount
        return totals

    def to_builtins(self) -> list[dict[str, object]]:
        """The movements as plain data (for the admin API)."""
        with self._lock:
            return [msgspec.to_builtins(m) for m in self.movements]
