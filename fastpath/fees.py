"""Provider fees for a payment, exact to the minor unit, and the cheapest-first ranking.

Usage::

    from fastpath.fees import FeeSchedule, FeeTable

    stripe_us = FeeSchedule(percent_centibps=29_000, fixed_minor=30)    # 2.9 % + 30
    quote_fee(stripe_us, 1000)                                          # -> 59
    table = FeeTable([stripe_us, adyen, paypal])                        # once per routing config
    table.rank(1000, cross_border=True, needs_fx=False)                 # -> [(index, fee), ...]
"""

from fastpath._compat import NO_EXTENSIONS
from fastpath._types import FeeSchedule

IMPLEMENTATION: str
if not NO_EXTENSIONS:
    try:
        from fastpath._fees_c import FeeTable, quote_fee, rank_quotes

        IMPLEMENTATION = "c"
    except ImportError:  # not built: the tests refuse this unless SWITCH_NO_EXTENSIONS is set
        from fastpath._fees_py import FeeTable, quote_fee, rank_quotes

        IMPLEMENTATION = "py"
else:
    from fastpath._fees_py import FeeTable, quote_fee, rank_quotes

    IMPLEMENTATION = "py"

__all__ = ["IMPLEMENTATION", "FeeSchedule", "FeeTable", "quote_fee", "rank_quotes"]
