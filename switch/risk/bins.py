"""BIN table: a card's brand, issuing country, funding type and issuer from its first digits.

CSV format (UTF-8, a header line, ``#`` lines and blank lines ignored)::

    bin_low,bin_high,brand,country,funding,issuer
    4,,visa,,,
    2221,2720,mastercard,,,
    424242,,visa,US,credit,Synthetic Test Bank US

- ``bin_low`` (required): 1 to 8 digits. ``bin_high`` (optional, same number of digits, not
  below ``bin_low``): the row then covers every card whose first digits lie between the two, so
  ``51,55`` is Mastercard's 51-55. Empty ``bin_high`` means the prefix ``bin_low`` alone.
- ``brand``: lower-cased (``visa``, ``mastercard``, ``amex``, ...); ``country``: ISO 3166 alpha-2;
  ``funding``: ``credit``, ``debit`` or ``prepaid``; ``issuer``: free text. Each may be empty.
- Only ``bin_low`` is required in the header; the other columns may be left out or reordered.
  An unknown column, a malformed field or a row repeating another's range is an error that names
  the line and the column. A quoted field may not span lines.

Lookup: the most specific row wins: the narrowest range once every row is widened to eight
digits, so a prefix of 8 digits beats one of 6, which beats the brand's one-digit ``4``. At equal
width an operator-loaded row beats a bundled one. A field the winning row leaves empty is taken
from the next wider row that has it (a six-digit row with only a country still says ``visa``).
A number of six or seven digits (a bare BIN) matches only rows of at most that many digits.

The bundled table (``data/bins.csv``) is synthetic: the schemes' brand ranges and the sandbox's test
cards. ``switch bins load PATH`` stores an acquirer's table in PostgreSQL (``bin_ranges``, replaced
whole, with a new generation); every worker's :meth:`BinTable.refresh` picks it up by generation
and merges it over the bundled rows, without a restart.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Literal, cast

import asyncpg
import msgspec

from switch.risk._ranges import Segments, Span, flatten
from switch.risk.types import BinInfo

__all__ = ["BinRow", "BinTable", "BinTableError", "bundled_rows", "parse_bins_csv", "store_bins"]

Funding = Literal["credit", "debit", "prepaid"]
COLUMNS = ("bin_low", "bin_high", "brand", "country", "funding", "issuer")
MAX_DIGITS = 8
_FUNDING = frozenset({"credit", "debit", "prepaid"})
_DIGITS = re.compile(r"[0-9]{1,8}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_BRAND = re.compile(r"[a-z0-9][a-z0-9 _-]{0,31}")
_MAX_ISSUER = 120
# A bare BIN is 6 to 8 digits; a card number is at most 19.
_MIN_QUERY, _MAX_QUERY = 6, 19
_OPERATOR, _BUNDLED = 0, 1


class BinTableError(ValueError):
    """A BIN CSV row that does not validate; ``line`` is 1-based, ``field`` the column."""

    def __init__(self, line: int, field: str, message: str) -> None:
        """Build the error; its text is ``line N, FIELD: message``."""
        super().__init__(f"line {line}, {field}: {message}")
        self.line = line
        self.field = field


class BinRow(msgspec.Struct, frozen=True, kw_only=True):
    """One validated row: first digits ``low`` to ``high`` (same length) and what they say."""

    low: str
    high: str
    brand: str | None = None
    country: str | None = None
    funding: Funding | None = None
    issuer: str | None = None


def _optional(value: str) -> str | None:
    value = value.strip()
    return value or None


def _row(line: int, fields: dict[str, str]) -> BinRow:
    low = fields.get("bin_low", "").strip()
    if not _DIGITS.fullmatch(low):
        raise BinTableError(line, "bin_low", f"{low!r} is not 1 to {MAX_DIGITS} digits")
    high = fields.get("bin_high", "").strip() or low
    if not _DIGITS.fullmatch(high) or len(high) != len(low):
        raise BinTableError(line, "bin_high", f"{high!r} is not {len(low)} digits like bin_low {low!r}")
    if int(high) < int(low):
        raise BinTableError(line, "bin_high", f"{high!r} is below bin_low {low!r}")
    brand = _optional(fields.get("brand", ""))
    if brand is not None:
        brand = brand.lower()
        if not _BRAND.fullmatch(brand):
            raise BinTableError(line, "brand", f"{brand!r} is not a brand name (letters, digits, space, _ or -)")
    country = _optional(fields.get("country", ""))
    if country is not None:
        country = country.upper()
        if not _COUNTRY.fullmatch(country):
            raise BinTableError(line, "country", f"{country!r} is not an ISO 3166 alpha-2 country code")
    funding = _optional(fields.get("funding", ""))
    if funding is not None:
        funding = funding.lower()
        if funding not in _FUNDING:
            raise BinTableError(line, "funding", f"{funding!r} is not one of credit, debit, prepaid")
    issuer = _optional(fields.get("issuer", ""))
    if issuer is not None and (len(issuer) > _MAX_ISSUER or not issuer.isprintable()):
        raise BinTableError(line, "issuer", f"must be printable text of at most {_MAX_ISSUER} characters")
    return BinRow(
        low=low, high=high, brand=brand, country=country, funding=cast("Funding | None", funding), issuer=issuer
    )


def parse_bins_csv(text: str) -> list[BinRow]:
    """Parse and validate a BIN table in the CSV format of this module.

    Args:
        text: The file's content.

    Returns:
        The rows, in file order.

    Raises:
        BinTableError: the header or a row does not validate (the first problem found).
    """
    lines = text.splitlines()
    # Comment lines become empty lines, which csv skips, so reader.line_num stays the file's line.
    reader = csv.reader("" if line.lstrip().startswith("#") else line for line in lines)
    header: list[str] | None = None
    rows: list[BinRow] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        for fields in reader:
            if not fields or all(not field.strip() for field in fields):
                continue
            line = reader.line_num
            if header is None:
                header = [name.strip().lower() for name in fields]
                for name in header:
                    if name not in COLUMNS:
                        raise BinTableError(line, name or "header", f"unknown column; expected {', '.join(COLUMNS)}")
                if len(set(header)) != len(header):
                    raise BinTableError(line, "header", "a column is named twice")
                if "bin_low" not in header:
                    raise BinTableError(line, "bin_low", "the header has no bin_low column")
                continue
            if len(fields) > len(header):
                raise BinTableError(line, "row", f"{len(fields)} fields for {len(header)} columns")
            row = _row(line, dict(zip(header, fields, strict=False)))
            first = seen.setdefault((row.low, row.high), line)
            if first != line:
                raise BinTableError(line, "bin_low", f"range {row.low}-{row.high} is already on line {first}")
            rows.append(row)
    except csv.Error as exc:
        raise BinTableError(reader.line_num, "row", f"not valid CSV: {exc}") from None
    if header is None:
        raise BinTableError(max(1, len(lines)), "header", "no header line (bin_low,bin_high,...)")
    return rows


def bundled_rows() -> list[BinRow]:
    """Return the rows of the bundled, synthetic table (``switch/risk/data/bins.csv``)."""
    text = resources.files("switch.risk.data").joinpath("bins.csv").read_text(encoding="utf-8")
    return parse_bins_csv(text)


# A segment's value: (brand, country, funding, issuer), already merged field by field.
_Fields = tuple[str | None, str | None, str | None, str | None]


def _merge(rows: list[BinRow]) -> _Fields:
    """Take each field from the most specific row that has it (``rows`` run most specific first)."""
    brand = next((row.brand for row in rows if row.brand), None)
    country = next((row.country for row in rows if row.country), None)
    funding = next((row.funding for row in rows if row.funding), None)
    issuer = next((row.issuer for row in rows if row.issuer), None)
    return (brand, country, funding, issuer)


class BinTable:
    """The bundled BIN rows with the operator's loaded rows merged over them; cheap lookups.

    Lookups bisect over disjoint segments built once per load (see ``switch.risk._ranges``), so
    they cost the same for the bundled 40 rows as for an acquirer's hundreds of thousands.
    """

    def __init__(self, operator_rows: Sequence[BinRow] = (), *, bundled: bool = True, generation: int = 0) -> None:
        """Build a table.

        Args:
            operator_rows: Rows loaded by the operator; they win over bundled rows of equal width.
            bundled: Include the bundled synthetic table beneath them.
            generation: The stored generation ``operator_rows`` came from (0: none loaded).
        """
        self._bundled = bundled_rows() if bundled else []
        self._use(operator_rows, generation)

    def _use(self, operator_rows: Sequence[BinRow], generation: int) -> None:
        spans: list[tuple[BinRow, tuple[int, int, int]]] = []
        for source, rows in ((_OPERATOR, operator_rows), (_BUNDLED, self._bundled)):
            for index, row in enumerate(rows):
                scale = 10 ** (MAX_DIGITS - len(row.low))
                width = (int(row.high) - int(row.low) + 1) * scale
                # Narrowest first, then operator over bundled, then the later row of a file.
                spans.append((row, (width, source, -index)))
        self._spans = spans
        self._segments: dict[int, Segments[_Fields]] = {}
        self.generation = generation
        self.operator_rows = len(operator_rows)
        self._segments_for(MAX_DIGITS)

    def _segments_for(self, digits: int) -> Segments[_Fields]:
        """Segments over ``digits``-digit prefixes, from rows of at most that many digits."""
        found = self._segments.get(digits)
        if found is None:
            spans = []
            for row, rank in self._spans:
                if len(row.low) <= digits:
                    scale = 10 ** (digits - len(row.low))
                    spans.append(Span(int(row.low) * scale, (int(row.high) + 1) * scale - 1, rank, row))
            found = flatten(spans, _merge)
            self._segments[digits] = found
        return found

    def lookup(self, number_or_bin: str) -> BinInfo | None:
        """Describe a card number or a bare BIN.

        Args:
            number_or_bin: A card number (spaces and dashes allowed) or its first 6 to 8 digits.

        Returns:
            What the table knows, with ``bin`` set to the first six digits (never more of the
            number), or ``None`` when no row covers it.

        Raises:
            ValueError: not 6 to 19 digits.
        """
        digits = number_or_bin.replace(" ", "").replace("-", "")
        if not (_MIN_QUERY <= len(digits) <= _MAX_QUERY and digits.isascii() and digits.isdigit()):
            raise ValueError("number_or_bin must be 6 to 19 digits (a card number or its BIN)")
        resolution = min(len(digits), MAX_DIGITS)
        fields = self._segments_for(resolution).find(int(digits[:resolution]))
        if fields is None:
            return None
        brand, country, funding, issuer = fields
        return BinInfo(
            bin=digits[:6], brand=brand, country=country, funding=cast("Funding | None", funding), issuer=issuer
        )

    async def refresh(self, pool: asyncpg.Pool | asyncpg.Connection) -> bool:
        """Pick up the operator's rows when ``switch bins load`` stored a new generation.

        One small query when nothing changed; call it periodically (e.g. every few seconds).

        Args:
            pool: A pool or connection on the migrated database.

        Returns:
            True when the table changed.
        """
        generation = await pool.fetchval("SELECT generation FROM bin_table_generation")
        if generation is None or generation == self.generation:
            return False
        if isinstance(pool, asyncpg.Pool):
            async with pool.acquire() as connection:
                generation, rows = await _read_stored(connection)
        else:
            generation, rows = await _read_stored(pool)
        self._use(rows, generation)
        return True


async def _read_stored(connection: asyncpg.Connection) -> tuple[int, list[BinRow]]:
    # One snapshot, so the rows read belong to the generation read even while a load commits.
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        generation = await connection.fetchval("SELECT generation FROM bin_table_generation")
        records = await connection.fetch(
            "SELECT bin_low, bin_high, brand, country, funding, issuer FROM bin_ranges ORDER BY line"
        )
    rows = [
        BinRow(
            low=record["bin_low"],
            high=record["bin_high"],
            brand=record["brand"],
            country=record["country"],
            funding=record["funding"],
            issuer=record["issuer"],
        )
        for record in records
    ]
    return int(generation), rows


async def store_bins(connection: asyncpg.Connection, rows: Iterable[BinRow], *, source: str) -> int:
    """Replace the operator's BIN rows with ``rows`` and start a new generation.

    Args:
        connection: A connection on the migrated database.
        rows: Validated rows (see :func:`parse_bins_csv`), kept in this order.
        source: Where they came from (a file name), recorded with the generation.

    Returns:
        The new generation; workers' :meth:`BinTable.refresh` load it.
    """
    records = [
        (line, row.low, row.high, row.brand, row.country, row.funding, row.issuer)
        for line, row in enumerate(rows, start=1)
    ]
    async with connection.transaction():
        # The row lock serializes two concurrent loads; the later one wins whole.
        await connection.execute("SELECT generation FROM bin_table_generation FOR UPDATE")
        await connection.execute("DELETE FROM bin_ranges")
        await connection.copy_records_to_table(
            "bin_ranges",
            records=records,
            columns=["line", "bin_low", "bin_high", "brand", "country", "funding", "issuer"],
        )
        generation = await connection.fetchval(
            "UPDATE bin_table_generation SET generation = generation + 1, source = $1, row_count = $2,"
            " loaded_at = $3 RETURNING generation",
            source,
            len(records),
            int(time.time()),
        )
    return int(generation)
