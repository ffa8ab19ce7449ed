"""IP-country table: IPv4 and IPv6, nested networks, invalid input, operator files."""

from __future__ import annotations

import pytest

from switch.risk.geoip import GeoIpError, IpCountryTable


@pytest.fixture(scope="module")
def table() -> IpCountryTable:
    return IpCountryTable.bundled()


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("203.0.113.7", "US"),
        ("203.0.113.0", "US"),
        ("203.0.113.255", "US"),
        ("192.0.2.1", "GB"),
        ("198.51.100.127", "DE"),
        ("198.51.100.128", "FR"),  # the nested /25 wins over its /24
        ("2001:db8::1", "US"),
        ("2001:db8:7fff:ffff:ffff:ffff:ffff:ffff", "US"),
        ("2001:db8:8000::1", "DE"),
        ("2001:DB8:8000:0:0:0:0:1", "DE"),
        ("::ffff:203.0.113.7", "US"),
        (" 192.0.2.1 ", "GB"),
    ],
)
def test_an_address_in_a_bundled_range_finds_its_country(table, ip, country):
    assert table.lookup(ip) == country


@pytest.mark.parametrize("ip", ["8.8.8.8", "203.0.114.0", "203.0.112.255", "2001:db9::1", "::1", "2001:db7::"])
def test_an_address_outside_every_range_is_none(table, ip):
    assert table.lookup(ip) is None


@pytest.mark.parametrize("ip", ["", None, "not an ip", "256.1.1.1", "203.0.113", "2001:db8::g", "203.0.113.7/24"])
def test_an_invalid_address_is_none(table, ip):
    assert table.lookup(ip) is None


def test_an_operator_file_replaces_the_bundled_table(tmp_path):
    path = tmp_path / "countries.csv"
    path.write_text("network,country\n# comment\n10.0.0.0/8,nl\n10.1.0.0/16,BE\n2a00::/12,NL\n")
    table = IpCountryTable.from_file(path)
    assert table.lookup("10.2.3.4") == "NL"
    assert table.lookup("10.1.3.4") == "BE"
    assert table.lookup("2a00:1450::1") == "NL"
    assert table.lookup("203.0.113.7") is None


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("network,country\n10.0.0.0/8,NL\n10.0.0.1/8,NL\n", 3, "network"),
        ("network,country\n\n10.0.0.0/33,NL\n", 3, "network"),
        ("network,country\n10.0.0.0/8,NLD\n", 2, "country"),
        ("network,country\n10.0.0.0/8\n", 2, "row"),
        ("cidr,country\n10.0.0.0/8,NL\n", 1, "header"),
        ("", 1, "header"),
    ],
)
def test_a_malformed_row_is_an_error_naming_its_line_and_column(text, line, field):
    with pytest.raises(GeoIpError) as caught:
        IpCountryTable.from_csv(text)
    assert (caught.value.line, caught.value.field) == (line, field)
    assert str(caught.value).startswith(f"line {line}, {field}: ")
