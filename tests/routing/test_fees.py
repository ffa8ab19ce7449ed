"""Fee schedules from the providers file: parsing, line choice, exact fees and FX costs."""

import pytest

from fastpath.fees import FeeSchedule
from switch.config import ConfigError
from switch.providers import load_accounts
from switch.routing.fees import SANDBOX_ROUTING, build_account_routing, markup_cost, parse_bps

from .conftest import PROVIDERS_TOML


class Priced:
    def __init__(self, fee, fx_cost):
        self.fee, self.fx_cost = fee, fx_cost


def priced(book, *args):
    fees, fx_costs, _ = book.price(*args)
    return [Priced(fee, fx_cost) for fee, fx_cost in zip(fees, fx_costs, strict=True)]


def test_providers_file_fields_are_carried_and_parsed(accounts):
    adyen = accounts["adyen-eu"]
    assert (adyen.country, adyen.region, adyen.settlement_currency) == ("NL", "EEA", "EUR")
    assert adyen.settlement_delay_days == 1
    assert adyen.fx_markup_bps == 120
    assert adyen.fees[0].schedule == FeeSchedule(percent_centibps=14_000, fixed_minor=11, cross_border_centibps=5_000)
    assert adyen.fees[0].fixed_currency == "EUR"
    assert adyen.fees[1].schedule.percent_centibps == 30_050
    assert adyen.fees[2].schedule.percent_centibps == 20_000
    assert adyen.fees[2].fixed_currency is None
    assert accounts["sandbox"] is SANDBOX_ROUTING


@pytest.mark.parametrize(
    ("value", "centibps"),
    [("1.40", 140), ("290", 29_000), (140, 14_000), ("0", 0), (" 2.5 ", 250), ("10000", 1_000_000)],
)
def test_basis_points_parse_exactly(value, centibps):
    assert parse_bps(value, "x") == centibps


@pytest.mark.parametrize("value", [1.4, "1.405", "-1", "abc", "10000.01", True, None, "NaN"])
def test_bad_basis_points_are_refused(value):
    with pytest.raises(ConfigError, match="percent_bps"):
        parse_bps(value, "percent_bps")


@pytest.mark.parametrize(
    ("method", "currency", "card_country", "line"),
    [
        ("card", "EUR", "DE", 0),  # method + currency + region (EEA)
        ("card", "EUR", "NL", 0),  # a domestic card takes the account's region line
        ("card", "EUR", "US", 1),  # method + international beats the catch-all
        ("card", "JPY", "US", 1),
        ("card", "JPY", "DE", 2),  # no card line for EEA cards in JPY: the catch-all
        ("gopay", "EUR", None, 2),
        ("card", "EUR", None, 2),  # no card country: region lines do not apply
    ],
)
def test_most_specific_fee_line_applies(accounts, method, currency, card_country, line):
    adyen = accounts["adyen-eu"]
    region = adyen.card_region(card_country)
    assert adyen.line_for(method, currency, region) is adyen.fees[line]


def test_card_region_is_seen_from_the_account(accounts):
    adyen, stripe = accounts["adyen-eu"], accounts["stripe"]
    assert adyen.card_region("NL") == "domestic"
    assert adyen.card_region("DE") == "EEA"
    assert adyen.card_region("GB") == "international"
    assert stripe.card_region("DE") == "international"
    assert stripe.card_region("US") == "domestic"
    assert SANDBOX_ROUTING.card_region("DE") is None


def test_fees_and_fx_costs_are_exact(accounts, fee_book):
    names = ("adyen-eu", "stripe", "stripe-eu", "sandbox")
    fees, fx_costs, _ = fee_book.price(names, accounts, 10_000, "EUR", "card", "DE")
    prices = [Priced(fee, fx_cost) for fee, fx_cost in zip(fees, fx_costs, strict=True)]
    # adyen: 1.40 % of 100.00 EUR + 0.11, EEA card so no cross-border, settles EUR: no FX.
    assert (prices[0].fee, prices[0].fx_cost) == (151, 0)
    # stripe: (2.90 + 1.50 cross-border + 1.00 FX) % = 540, + 0.30 USD = 0.24 EUR at 1.25; FX markup 2 %.
    assert (prices[1].fee, prices[1].fx_cost) == (564, 200)
    # stripe-eu: 1.50 % + 0.25, a DE card is in its region.
    assert (prices[2].fee, prices[2].fx_cost) == (175, 0)
    # sandbox: no fee lines, no settlement currency.
    assert (prices[3].fee, prices[3].fx_cost) == (0, 0)


def test_cross_border_and_fx_surcharges_apply_per_account(accounts, fee_book):
    prices = priced(fee_book, ("stripe-eu", "adyen-eu"), accounts, 10_000, "USD", "card", "US")
    # stripe-eu: US card is cross-border (1.50 + 1.75 %), fixed 0.25 EUR = 0.3125 USD -> 0.31 half-even;
    # settles EUR, so no FX surcharge in its line (fx_bps 0) but its markup 0 bps costs nothing.
    assert (prices[0].fee, prices[0].fx_cost) == (325 + 31, 0)
    # adyen: international card line 3.005 % -> 300.5 -> 300 (half-even) + 0.11 EUR = 0.1375 USD -> 14;
    # FX markup 1.20 % of 100.00 USD.
    assert (prices[1].fee, prices[1].fx_cost) == (300 + 14, 120)


def test_zero_decimal_currency(accounts, fee_book):
    prices = priced(fee_book, ("adyen-eu",), accounts, 10_000, "JPY", "card", "DE")
    # catch-all 2 % of 10,000 JPY, markup 1.20 %.
    assert (prices[0].fee, prices[0].fx_cost) == (200, 120)


def test_account_with_lines_none_applying_has_no_fee_data(accounts, fee_book):
    fees, fx_costs, notes = fee_book.price(("stripe",), accounts, 1000, "EUR", "gopay", None)
    assert (fees, fx_costs, notes) == ([None], [None], ["no fee data"])


def test_fee_table_is_cached_per_combination_and_rebuilt_when_accounts_change(accounts, fee_book, providers_file):
    names = ("adyen-eu", "stripe")
    fee_book.price(names, accounts, 1000, "EUR", "card", "DE")
    fee_book.price(names, accounts, 2000, "EUR", "card", "DE")
    assert len(fee_book._prepared) == 1
    fee_book.price(names, accounts, 2000, "EUR", "card", "FR")
    assert len(fee_book._prepared) == 2
    changed = dict(accounts)
    changed["adyen-eu"] = build_account_routing(
        load_accounts(providers_file(PROVIDERS_TOML.replace('percent_bps = "140"', 'percent_bps = "100"')), environ={})
    )["adyen-eu"]
    assert fee_book.price(names, changed, 10_000, "EUR", "card", "DE")[0][0] == 111


def test_markup_cost_rounds_half_even():
    assert markup_cost(125, 200) == 2  # 2.5 -> 2
    assert markup_cost(175, 200) == 4  # 3.5 -> 4
    assert markup_cost(10_000, 0) == 0


BAD_FILES = [
    ('percent_bps = "140"', "percent_bps = 1.4", "account 'adyen-eu': fees.0.percent_bps"),
    ('percent_bps = "140"', 'percent_bps = "1.405"', "fees.0.percent_bps has more than 2 decimal places"),
    ('cross_border_bps = "50"', 'cross_border_bps = "x"', "fees.0.cross_border_bps"),
    ('region = "international"', 'region = "asia"', "account 'adyen-eu': fees.1.region"),
    ('region = "EEA"\nsettlement_currency', 'region = "APAC"\nsettlement_currency', "account 'adyen-eu': region"),
    ('country = "NL"', 'country = "nl"', "account 'adyen-eu': country"),
    ('settlement_currency = "USD"', 'settlement_currency = "USDX"', "account 'stripe': settlement_currency"),
    ("fx_markup_bps = 200", "fx_markup_bps = 20000", "account 'stripe': fx_markup_bps"),
    ("settlement_delay_days = 2", "settlement_delay_days = -1", "account 'stripe': settlement_delay_days"),
    ("fixed = 30", "fixed = 30\ncolour = 1", "account 'stripe': fees.0"),
    ("fixed = 30", "fixed = -5", "account 'stripe': fees.0.fixed"),
    ("fixed = 30", "fixed = 30\nmin_fee = 50\nmax_fee = 40", "account 'stripe': fees.0"),
    (
        'payment_method = "card"\npercent_bps = "290"',
        'payment_method = "Card!"\npercent_bps = "290"',
        "fees.0.payment_method",
    ),
    ('currency = "EUR"\nregion = "EEA"', 'currency = "EURO"\nregion = "EEA"', "account 'adyen-eu': fees.0.currency"),
    ("fixed = 25", 'fixed = 25\nfixed_currency = "ABC"', "account 'stripe-eu': fees.0.fixed_currency"),
    (
        "percent_bps = 200",
        'percent_bps = 200\n[[accounts.adyen-eu.fees]]\npercent_bps = "1"',
        "account 'adyen-eu': fees.3 applies to the same",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_FILES, ids=[message for _, _, message in BAD_FILES])
def test_bad_routing_fields_name_account_and_field(providers_file, old, new, message):
    assert old in PROVIDERS_TOML
    path = providers_file(PROVIDERS_TOML.replace(old, new, 1))
    with pytest.raises(ConfigError) as raised:
        build_account_routing(load_accounts(path, environ={}))
    assert message in str(raised.value)


def test_fixed_fee_needs_a_currency(providers_file):
    path = providers_file('[accounts.acq]\nprovider = "adyen"\n[[accounts.acq.fees]]\nfixed = 10\n')
    with pytest.raises(ConfigError, match=r"account 'acq': fees\.0\.fixed_currency is needed"):
        build_account_routing(load_accounts(path, environ={}))


def test_wrong_type_is_refused_when_loading(providers_file):
    path = providers_file('[accounts.acq]\nprovider = "adyen"\nfx_markup_bps = "lots"\n')
    with pytest.raises(ConfigError, match="fx_markup_bps"):
        load_accounts(path, environ={})
