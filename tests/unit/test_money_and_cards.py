"""ISO 4217 exponents, exact formatting, card validation and tokens."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch import money
from switch.vault.cards import CardRejected, Vault, brand_of, luhn_valid, validate_card


@pytest.mark.parametrize(("code", "exponent"), [("JPY", 0), ("EUR", 2), ("USD", 2), ("KWD", 3), ("BHD", 3), ("CLF", 4)])
def test_iso_exponents(code, exponent):
    assert money.exponent(code) == exponent


@pytest.mark.parametrize("code", ["XXX", "ZZZ", "eur", "XDR"])
def test_unknown_or_unchargeable_currencies_are_refused(code):
    assert not money.is_known_currency(code)
    with pytest.raises(ValueError, match="unknown currency"):
        money.exponent(code)


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [(1250, "EUR", "12.50"), (5, "EUR", "0.05"), (1250, "JPY", "1250"), (1, "KWD", "0.001"), (-105, "USD", "-1.05")],
)
def test_format_minor_is_exact(amount, currency, text):
    assert money.format_minor(amount, currency) == text


@given(st.integers(-(10**15), 10**15), st.sampled_from(["EUR", "JPY", "KWD", "CLF"]))
def test_format_minor_round_trips(amount, currency):
    text = money.format_minor(amount, currency)
    digits = money.exponent(currency)
    whole, _, fraction = text.lstrip("-").partition(".")
    value = int(whole) * 10**digits + (int(fraction) if fraction else 0)
    assert (-value if text.startswith("-") else value) == amount


@pytest.mark.parametrize(
    ("number", "brand"),
    [("4242424242424242", "visa"), ("5555555555554444", "mastercard"), ("378282246310005", "amex"),
     ("2223003122003222", "mastercard"), ("6011111111111117", "discover"), ("3566002020360505", "jcb")],
)  # fmt: skip
def test_brand_and_luhn(number, brand):
    assert luhn_valid(number)
    assert brand_of(number) == brand


def test_luhn_rejects_a_changed_digit():
    assert not luhn_valid("4242424242424241")


def test_expired_cards_are_rejected_and_the_current_month_is_accepted():
    today = datetime.date(2026, 11, 25)
    validate_card("4242424242424242", 11, 2026, today)
    with pytest.raises(CardRejected) as raised:
        validate_card("4242424242424242", 10, 2026, today)
    assert raised.value.code == "expired_card"


def test_rejections_never_include_the_number():
    with pytest.raises(CardRejected) as raised:
        validate_card("4242424242424241", 1, 2030)
    assert "4242424242424241" not in str(raised.value)


def test_tokens_are_random_and_fingerprints_stable():
    vault = Vault(b"k" * 32)
    first = vault.summarize("4242424242424242", 1, 2030)
    second = vault.summarize("4242424242424242", 1, 2030)
    assert first.token != second.token
    assert first.fingerprint == second.fingerprint
    assert "4242424242424242" not in first.token + first.fingerprint
    assert Vault(b"j" * 32).fingerprint("4242424242424242") != first.fingerprint
