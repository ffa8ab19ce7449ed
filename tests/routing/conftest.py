"""Shared pieces of the routing tests: a providers file, a clock you move by hand."""

import textwrap

import pytest

from fastpath.fx import RateTable
from switch.providers import load_accounts
from switch.routing.fees import FeeBook, build_account_routing

PROVIDERS_TOML = """
[accounts.adyen-eu]
provider = "adyen"
country = "NL"
region = "EEA"
settlement_currency = "EUR"
settlement_delay_days = 1
fx_markup_bps = 120
[[accounts.adyen-eu.fees]]
payment_method = "card"
currency = "EUR"
region = "EEA"
percent_bps = "140"
fixed = 11
cross_border_bps = "50"
[[accounts.adyen-eu.fees]]
payment_method = "card"
region = "international"
percent_bps = "300.5"
fixed = 11
[[accounts.adyen-eu.fees]]
percent_bps = 200

[accounts.stripe]
provider = "stripe"
country = "US"
settlement_currency = "USD"
settlement_delay_days = 2
fx_markup_bps = 200
[[accounts.stripe.fees]]
payment_method = "card"
percent_bps = "290"
fixed = 30
cross_border_bps = "150"
fx_bps = "100"

[accounts.stripe-eu]
provider = "stripe"
country = "IE"
region = "EEA"
settlement_currency = "EUR"
[[accounts.stripe-eu.fees]]
payment_method = "card"
percent_bps = "150"
fixed = 25
cross_border_bps = "175"
"""

# 1 EUR = 1.25 USD = 160 JPY: round numbers so the expected fees are easy to check by hand.
RATES = RateTable({"USD": "1.25", "JPY": "160"})


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def providers_file(tmp_path):
    def write(text: str = PROVIDERS_TOML) -> str:
        path = tmp_path / "providers.toml"
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write


@pytest.fixture
def accounts(providers_file):
    return build_account_routing(load_accounts(providers_file(), environ={}))


@pytest.fixture
def fee_book():
    return FeeBook(rates=RATES)
