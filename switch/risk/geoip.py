"""IP address to country, from a CSV of CIDR networks.

CSV format (UTF-8, a header line, ``#`` lines and blank lines ignored)::

    network,country
    198.51.100.0/24,DE
    198.51.100.128/25,FR
    2001:db8::/33,US

``network`` is an IPv4 or IPv6 CIDR network (host bits must be zero); ``country`` an ISO 3166
alpha-2 code. Networks may nest: the most specific one wins. A malformed row is an error naming
its line and column.

The bundled table (``data/ip_countries.csv``) is test data: only the documentation ranges
192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32, split across a few countries.
For production, build the table from an operator's file with :meth:`IpCountryTable.from_file`
(e.g. a GeoLite2 or IP2Location country export converted to this format).

Lookups bisect over sorted integer ranges, one list per address family; an IPv4-mapped IPv6
address (``::ffff:203.0.113.7``) is looked up as IPv4. An invalid address finds ``None``.
"""

from __future__ import annotations

import csv
import ipaddress
import pathlib
import re
from importlib import resources

from switch.risk._ranges import Segments, Span, flatten

__all__ = ["GeoIpError", "IpCountryTable", "parse_ip_countries_csv"]

_COUNTRY = re.compile(r"[A-Z]{2}")
_COLUMNS = ["network", "country"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class GeoIpError(ValueError):
    """An IP-country CSV row that does not validate; ``line`` is 1-based, ``field`` the column."""

    def __init__(self, line: int, field: str, message: str) -> None:
        """Build the error; its text is ``line N, FIELD: message``."""
        super().__init__(f"line {line}, {field}: {message}")
        self.line = line
        self.field = field


def parse_ip_countries_csv(text: str) -> list[tuple[Network, str]]:
    """Parse and validate an IP-country table in this module's CSV format.

    Args:
        text: The file's content.

    Returns:
        ``(network, country)`` per row, in file order.

    Raises:
        GeoIpError: the header or a row does not validate (the first problem found).
    """
    reader = csv.reader("" if line.lstrip().startswith("#") else line for line in text.splitlines())
    header_seen = False
    rows: list[tuple[Network, str]] = []
    try:
        for fields in reader:
            if not fields or all(not field.strip() for field in fields):
                continue
            line = reader.line_num
            cleaned = [field.strip() for field in fields]
            if not header_seen:
                if [name.lower() for name in cleaned] != _COLUMNS:
                    raise GeoIpError(line, "header", "expected the header network,country")
                header_seen = True
                continue
            if len(cleaned) != len(_COLUMNS):
                raise GeoIpError(line, "row", f"{len(cleaned)} fields for 2 columns (network,country)")
            try:
                network = ipaddress.ip_network(cleaned[0])
            except ValueError as exc:
                raise GeoIpError(line, "network", f"{cleaned[0]!r} is not a CIDR network: {exc}") from None
            country = cleaned[1].upper()
            if not _COUNTRY.fullmatch(country):
                raise GeoIpError(line, "country", f"{cleaned[1]!r} is not an ISO 3166 alpha-2 country code")
            rows.append((network, country))
    except csv.Error as exc:
        raise GeoIpError(reader.line_num, "row", f"not valid CSV: {exc}") from None
    if not header_seen:
        raise GeoIpError(1, "header", "no header line (network,country)")
    return rows


class IpCountryTable:
    """Country of an IP address; the most specific containing network wins."""

    def __init__(self, rows: list[tuple[Network, str]]) -> None:
        """Build the lookup structures from ``(network, country)`` rows (later rows win ties)."""
        spans: dict[int, list[Span[str]]] = {4: [], 6: []}
        for index, (network, country) in enumerate(rows):
            low = int(network.network_address)
            # Narrower networks have longer prefixes: rank by -prefixlen, then the later row.
            spans[network.version].append(
                Span(low, low + network.num_addresses - 1, (-network.prefixlen, -index), country)
            )
        self._v4: Segments[str] = flatten(spans[4], _most_specific)
        self._v6: Segments[str] = flatten(spans[6], _most_specific)
        self.size = len(rows)

    @classmethod
    def from_csv(cls, text: str) -> IpCountryTable:
        """Build a table from CSV text; raises :class:`GeoIpError` for a malformed row."""
        return cls(parse_ip_countries_csv(text))

    @classmethod
    def from_file(cls, path: str | pathlib.Path) -> IpCountryTable:
        """Build a table from an operator's CSV file.

        Raises:
            OSError: the file cannot be read.
            UnicodeDecodeError: it is not UTF-8.
            GeoIpError: a row does not validate.
        """
        return cls.from_csv(pathlib.Path(path).read_text(encoding="utf-8-sig"))

    @classmethod
    def bundled(cls) -> IpCountryTable:
        """The bundled test table (documentation ranges only)."""
        return cls.from_csv(resources.files("switch.risk.data").joinpath("ip_countries.csv").read_text("utf-8"))

    def lookup(self, ip: str | None) -> str | None:
        """Return the ISO alpha-2 country of ``ip``, or ``None`` (unknown, invalid or absent)."""
        if not ip:
            return None
        try:
            address = ipaddress.ip_address(ip.strip())
        except ValueError:
            return None
        if address.version == 6:
            mapped = address.ipv4_mapped  # type: ignore[union-attr]
            if mapped is None:
                return self._v6.find(int(address))
            address = mapped
        return self._v4.find(int(address))


def _most_specific(countries: list[str]) -> str:
    return countries[0]
