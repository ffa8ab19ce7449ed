"""Value types shared by both implementations, so results compare equal across them."""

import msgspec

from fastpath._money import INT64_MAX, MAX_CENTIBPS, check_range


class FeeSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's fee for one payment method and region, in integers only.

    Percentages are in centi-basis-points (1/100 bp = 10^-6 of the amount), so 2.9 % is
    ``29_000`` and 0.015 % is ``15``. Fixed amounts are minor units of the payment currency.

    Attributes:
        percent_centibps: The base percentage.
        fixed_minor: The fixed part per payment.
        cross_border_centibps: Added to the percentage when the card is foreign.
        fx_centibps: Added to the percentage when the payment needs currency conversion.
        min_fee: Floor of the total fee (0: no floor).
        max_fee: Cap of the total fee (0: no cap).
    """

    percent_centibps: int = 0
    fixed_minor: int = 0
    cross_border_centibps: int = 0
    fx_centibps: int = 0
    min_fee: int = 0
    max_fee: int = 0

    def __post_init__(self) -> None:
        # Validated here, once, so neither implementation re-checks a schedule per quote.
        check_range(self.percent_centibps, "percent_centibps", 0, MAX_CENTIBPS)
        check_range(self.cross_border_centibps, "cross_border_centibps", 0, MAX_CENTIBPS)
        check_range(self.fx_centibps, "fx_centibps", 0, MAX_CENTIBPS)
        check_range(self.fixed_minor, "fixed_minor", 0, INT64_MAX)
        check_range(self.min_fee, "min_fee", 0, INT64_MAX)
        check_range(self.max_fee, "max_fee", 0, INT64_MAX)
        if self.max_fee and self.min_fee > self.max_fee:
            raise ValueError(f"min_fee {self.min_fee} is above max_fee {self.max_fee}")


class FxQuote(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one conversion, with everything the ledger needs to book it.

    ``amount_out`` is the exact value ``amount_in * rate * (10000 + markup_bps) / 10000``
    (in minor units of ``to_currency``) rounded once, half-even; ``residue`` is what that
    rounding removed, so ``amount_out + residue_numerator / residue_denominator`` is exact.

    Attributes:
        from_currency: ISO 4217 code converted from.
        to_currency: ISO 4217 code converted to.
        amount_in: Minor units of ``from_currency``.
        amount_out: Minor units of ``to_currency``, rounded half-even.
        rate_numerator: Mid rate, units of ``to_currency`` per unit of ``from_currency``
            (major units), as a reduced fraction: numerator ...
        rate_denominator: ... and denominator (always positive).
        markup_bps: Markup applied on top of the mid rate, in basis points.
        residue_numerator: Exact minus rounded amount, in minor units of ``to_currency``, as a
            reduced fraction with ``|residue| <= 1/2``: numerator (signed) ...
        residue_denominator: ... and denominator (always positive).
    """

    from_currency: str
    to_currency: str
    amount_in: int
    amount_out: int
    rate_numerator: int
    rate_denominator: int
    markup_bps: int
    residue_numerator: int
    residue_denominator: int
