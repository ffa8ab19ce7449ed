"""Pure-Python reference implementation of ``fastpath.fees``.

The compiled twin (``_fees_c.pyx``) must return exactly what this module returns and raise the
same errors; the differential tests hold them to it. Read this file to learn the arithmetic.
"""

from collections.abc import Iterable, Sequence

from fastpath._money import CENTIBPS_PER_UNIT, INT64_MAX, check_amount, check_int, overflow_error
from fastpath._types import FeeSchedule

__all__ = ["FeeSchedule", "FeeTable", "quote_fee", "rank_quotes"]


def _fee(
    amount: int,
    centibps: int,
    fixed_minor: int,
    min_fee: int,
    max_fee: int,
) -> int:
    """Fee for a validated amount and an already summed percentage."""
    # amount * centibps / 10^6 + fixed is exact as a fraction; rounding it half-even once is
    # the same as rounding the percentage part alone, because fixed is a whole number.
    quotient, remainder = divmod(amount * centibps, CENTIBPS_PER_UNIT)
    twice = 2 * remainder
    if twice > CENTIBPS_PER_UNIT or (twice == CENTIBPS_PER_UNIT and quotient & 1):
        quotient += 1
    fee = quotient + fixed_minor
    if fee > INT64_MAX:
        raise overflow_error(f"fee for amount {amount}")
    if fee < min_fee:
        fee = min_fee
    if max_fee and fee > max_fee:
        fee = max_fee
    return fee


def _centibps(schedule: FeeSchedule, cross_border: bool, needs_fx: bool) -> int:
    total = schedule.percent_centibps
    if cross_border:
        total += schedule.cross_border_centibps
    if needs_fx:
        total += schedule.fx_centibps
    return total


def quote_fee(schedule: FeeSchedule, amount: int, cross_border: bool = False, needs_fx: bool = False) -> int:
    """Return one provider's fee for one payment, in minor units of the payment currency.

    ``fee = amount * (percent [+ cross_border] [+ fx]) / 10^6 + fixed``, rounded half-even once,
    then raised to ``min_fee`` and capped at ``max_fee`` when those are set.

    Args:
        schedule: The provider's fee schedule.
        amount: The payment amount in minor units, 1 to 10^15.
        cross_border: The card was issued outside the provider's region.
        needs_fx: The payment is converted to another currency.

    Returns:
        The fee in minor units.

    Raises:
        TypeError: ``schedule`` is not a ``FeeSchedule`` or ``amount`` is not an int.
        ValueError: ``amount`` is out of range, or the fee overflows int64.
    """
    if not isinstance(schedule, FeeSchedule):
        raise TypeError(f"schedule must be a FeeSchedule, not {type(schedule).__name__}")
    check_amount(amount)
    return _fee(
        amount,
        _centibps(schedule, cross_border, needs_fx),
        schedule.fixed_minor,
        schedule.min_fee,
        schedule.max_fee,
    )


class FeeTable:
    """Candidate providers' schedules packed once, for quoting them all per payment.

    Build one per routing config (not per payment) and call ``rank`` for each authorization.
    """

    __slots__ = ("_schedules",)

    def __init__(self, schedules: Iterable[FeeSchedule]) -> None:
        """Pack the schedules.

        Args:
            schedules: One schedule per candidate; results refer to them by position.

        Raises:
            TypeError: an element is not a ``FeeSchedule``.
        """
        packed = tuple(schedules)
        for position, schedule in enumerate(packed):
            if not isinstance(schedule, FeeSchedule):
                raise TypeError(f"schedules[{position}] must be a FeeSchedule, not {type(schedule).__name__}")
        self._schedules = packed

    @property
    def schedules(self) -> tuple[FeeSchedule, ...]:
        """The packed schedules, in input order."""
        return self._schedules

    def __len__(self) -> int:
        return len(self._schedules)

    def quote(self, index: int, amount: int, cross_border: bool = False, needs_fx: bool = False) -> int:
        """Return the fee of the candidate at ``index``; see ``quote_fee``.

        Raises:
            IndexError: ``index`` is not a position in the table.
        """
        index = check_int(index, "index")
        if not 0 <= index < len(self._schedules):
            raise IndexError(f"fee table index {index} out of range 0..{len(self._schedules) - 1}")
        return quote_fee(self._schedules[index], amount, cross_border, needs_fx)

    def rank(self, amount: int, cross_border: bool = False, needs_fx: bool = False) -> list[tuple[int, int]]:
        """Quote every candidate and rank them by fee.

        Args:
            amount: The payment amount in minor units, 1 to 10^15.
            cross_border: The card was issued outside the providers' region.
            needs_fx: The payment is converted to another currency.

        Returns:
            ``(index, fee)`` pairs sorted by fee ascending, ties in input order.

        Raises:
            ValueError: as ``quote_fee``, for the amount or for any candidate's fee.
        """
        check_amount(amount)
        quotes = [
            (
                _fee(
                    amount,
                    _centibps(schedule, cross_border, needs_fx),
                    schedule.fixed_minor,
                    schedule.min_fee,
                    schedule.max_fee,
                ),
                index,
            )
            for index, schedule in enumerate(self._schedules)
        ]
        # Sorting (fee, index) pairs breaks ties by input order without relying on stability.
        quotes.sort()
        return [(index, fee) for fee, index in quotes]


def rank_quotes(
    schedules: FeeTable | Sequence[FeeSchedule],
    amount: int,
    cross_border: bool = False,
    needs_fx: bool = False,
) -> list[tuple[int, int]]:
    """Quote N candidate providers for one payment, cheapest first.

    Args:
        schedules: A prebuilt ``FeeTable`` (the fast way) or a sequence of schedules.
        amount: The payment amount in minor units, 1 to 10^15.
        cross_border: The card was issued outside the providers' region.
        needs_fx: The payment is converted to another currency.

    Returns:
        ``(index, fee)`` pairs sorted by fee ascending, ties in input order.
    """
    table = schedules if isinstance(schedules, FeeTable) else FeeTable(schedules)
    return table.rank(amount, cross_border, needs_fx)
