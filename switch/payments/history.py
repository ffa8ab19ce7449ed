"""A merchant's past payments of a period as risk facts, for backtesting a proposed rule document.

The facts come from each stored payment object (its ``body``), read in ``created`` order through
a server-side cursor so that a long period never sits in memory as JSON:

- ``amount``, ``currency``, ``payment_method.type``, and for cards the keyed ``fingerprint`` and the
  ``bin`` (looked up in the BIN table for the card's country, brand and funding);
- ``customer`` (email, ip, device_id, id, country, name) as the stored payment carries it, and
  the IP's country from the IP table (payments stored before the payment object kept its
  customer have none: rules keyed per email, IP, device or customer do not fire for them);
- ``declined`` when the payment's status is ``declined`` (risk declines included), ``refunded``
  when ``amount_refunded > 0``;
- ``disputed`` is always False: the switch has no disputes table yet;
- no sanctions matches: the stored ``risk`` object lists the rules that fired, not the list entry
  matched, so sanctions rules do not fire in a replay.
"""

from __future__ import annotations

import asyncpg
import msgspec

from switch.risk.backtest import HistoricPayment
from switch.risk.bins import BinTable
from switch.risk.geoip import IpCountryTable
from switch.risk.types import BinInfo, RiskFacts

MAX_PAYMENTS = 100_000
MAX_PERIOD_S = 92 * 86_400
_CURSOR_PREFETCH = 1_000


class PeriodError(ValueError):
    """The requested period cannot be replayed.

    Attributes:
        message: A sentence for humans.
        param: The request field at fault (``from`` or ``to``).
    """

    def __init__(self, message: str, param: str) -> None:
        """Build the error; see the class attributes."""
        super().__init__(message)
        self.message = message
        self.param = param


class _StoredCard(msgspec.Struct, kw_only=True):
    fingerprint: str | None = None
    bin: str | None = None


class _StoredMethod(msgspec.Struct, kw_only=True):
    type: str
    card: _StoredCard | None = None


class _StoredCustomer(msgspec.Struct, kw_only=True):
    email: str | None = None
    ip: str | None = None
    device_id: str | None = None
    id: str | None = None
    country: str | None = None
    name: str | None = None


class _StoredPayment(msgspec.Struct, kw_only=True):
    """The fields of a stored payment object a replay needs (the rest is skipped, not decoded)."""

    id: str
    status: str
    amount: int
    currency: str
    amount_refunded: int = 0
    payment_method: _StoredMethod
    customer: _StoredCustomer | None = None
    created: int


_DECODER = msgspec.json.Decoder(_StoredPayment)

_SQL = (
    "SELECT body::text AS body FROM payments WHERE merchant_id = $1 AND created >= $2 AND created < $3"
    " ORDER BY created, id LIMIT $4"
)


def check_period(start: int, end: int) -> None:
    """Validate a replay period ``[start, end)`` in Unix seconds.

    Raises:
        PeriodError: When ``end`` is not after ``start`` or the period is longer than 92 days.
    """
    if end <= start:
        raise PeriodError("to must be after from", "to")
    if end - start > MAX_PERIOD_S:
        raise PeriodError(f"the period may span at most {MAX_PERIOD_S // 86_400} days", "to")


class HistoryReader:
    """Loads a merchant's payments of a period as :class:`HistoricPayment` values."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        bins: BinTable | None = None,
        ips: IpCountryTable | None = None,
        max_payments: int = MAX_PAYMENTS,
    ) -> None:
        """Read from ``pool``; BIN and IP facts from the given tables (the bundled ones by default)."""
        self._pool = pool
        self._bins = bins or BinTable()
        self._ips = ips or IpCountryTable.bundled()
        self.max_payments = max_payments

    async def load(self, merchant_id: str, start: int, end: int) -> list[HistoricPayment]:
        """The merchant's payments created in ``[start, end)``, oldest first.

        Raises:
            PeriodError: For an invalid period, or one holding more than ``max_payments`` payments.
        """
        check_period(start, end)
        history: list[HistoricPayment] = []
        async with self._pool.acquire() as connection, connection.transaction(readonly=True):
            cursor = connection.cursor(_SQL, merchant_id, start, end, self.max_payments + 1, prefetch=_CURSOR_PREFETCH)
            async for row in cursor:
                if len(history) >= self.max_payments:
                    raise PeriodError(
                        f"the period holds more than {self.max_payments} payments; replay a shorter one", "to"
                    )
                history.append(self.historic(merchant_id, row["body"]))
        return history

    def historic(self, merchant_id: str, body: str | bytes) -> HistoricPayment:
        """One stored payment object as a replayable payment."""
        stored = _DECODER.decode(body)
        card = stored.payment_method.card
        customer = stored.customer or _StoredCustomer()
        facts = RiskFacts(
            merchant_id=merchant_id,
            amount=stored.amount,
            currency=stored.currency,
            payment_method=stored.payment_method.type,
            card_fingerprint=card.fingerprint if card is not None else None,
            bin=self._bin(card.bin if card is not None else None),
            email=customer.email,
            ip=customer.ip,
            ip_country=self._ips.lookup(customer.ip),
            device_id=customer.device_id,
            # As the live path keys a customer: the merchant's own id.
            customer_id=customer.id,
            customer_country=customer.country,
            names=(customer.name,) if customer.name else (),
            occurred_at=float(stored.created),
        )
        return HistoricPayment(
            id=stored.id,
            facts=facts,
            declined=stored.status == "declined",
            refunded=stored.amount_refunded > 0,
            # No disputes are recorded yet (no disputes table): nothing is known to be disputed.
            disputed=False,
        )

    def _bin(self, bin_digits: str | None) -> BinInfo | None:
        if not bin_digits:
            return None
        try:
            return self._bins.lookup(bin_digits) or BinInfo(bin=bin_digits[:6])
        except ValueError:
            return None


__all__ = ["MAX_PAYMENTS", "MAX_PERIOD_S", "HistoryReader", "PeriodError", "check_period"]
