"""The outcome rule, written once in adapters/base.py: technical only when nothing happened."""

from __future__ import annotations

import time

import pytest

from adapters._http import NotSent, TimedOut
from adapters.adyen import transformers as adyen
from adapters.base import (
    Outcome,
    SyncRequest,
    http_error_outcome,
    not_found_outcome,
    provider_key,
    transport_outcome,
)

U, T = Outcome.UNKNOWN, Outcome.TECHNICAL


def test_transport_failures_are_technical_only_when_not_sent() -> None:
    assert transport_outcome(NotSent("never connected")).outcome is T
    assert transport_outcome(TimedOut("read timeout")).outcome is U
    # Any other failure is not proof that nothing was sent.
    assert transport_outcome(OSError("reset")).outcome is U


@pytest.mark.parametrize(
    ("status", "expected"),
    [(429, T), (400, T), (401, T), (402, T), (404, T), (422, T), (409, U)]
    + [(s, U) for s in (500, 501, 502, 503, 504, 520, 599)]
    + [(200, U), (202, U), (302, U)],
)
def test_http_error_outcome(status: int, expected: Outcome) -> None:
    assert http_error_outcome(status) is expected


def _sync(attempted_at: float | None) -> SyncRequest:
    return SyncRequest(payment_id="pay_1", provider_reference=None, attempt_id="att_1", attempted_at=attempted_at)


def test_not_found_is_unknown_inside_the_consistency_window() -> None:
    now = time.time()
    young = not_found_outcome(_sync(now - 59), 3600, now=now)
    assert (young.outcome, young.code) == (U, "not_found_yet")
    # Without the attempt's time, "not found" can never be proof.
    undated = not_found_outcome(_sync(None), 3600, now=now)
    assert (undated.outcome, undated.code) == (U, "not_found_yet")


def test_not_found_is_technical_once_the_window_has_passed() -> None:
    now = time.time()
    old = not_found_outcome(_sync(now - 3601), 3600, now=now)
    assert (old.outcome, old.code) == (T, "not_found")
    edge = not_found_outcome(_sync(now - 3600), 3600, now=now)
    assert edge.outcome is T


def test_sync_request_defaults_to_an_authorization() -> None:
    request = SyncRequest(payment_id="p", provider_reference=None, attempt_id="a")
    assert (request.operation, request.operation_id, request.amount, request.currency, request.attempted_at) == (
        "authorize",
        None,
        None,
        None,
        None,
    )


def test_provider_key_passes_a_fitting_key_unchanged() -> None:
    assert provider_key("cap_01J9ZXK3", 64) == "cap_01J9ZXK3"
    assert provider_key("mer_1:order-42.retry_1", 64) == "mer_1:order-42.retry_1"


@pytest.mark.parametrize("limit", [64, 100, 108, 255])
def test_provider_key_hashes_a_long_key_to_fit_deterministically(limit: int) -> None:
    raw = "mer_7:" + "x" * 300
    key = provider_key(raw, limit)
    assert len(key) <= limit
    assert key == provider_key(raw, limit)
    assert key != provider_key(raw + "y", limit)
    assert key.startswith("mer_7:")  # a readable prefix survives


def test_provider_key_hashes_unsafe_characters() -> None:
    key = provider_key("mer_1:clé avec espace", 64)
    assert key.isascii() and " " not in key and len(key) <= 64
    assert key == provider_key("mer_1:clé avec espace", 64)


def test_a_raw_key_never_equals_another_keys_hashed_form() -> None:
    hashed = provider_key("a" * 100, 64)
    # The hashed form itself, sent again as a raw key, is hashed again (it carries the "~" marker).
    assert provider_key(hashed, 64) != hashed


def test_provider_key_refuses_a_limit_too_small_for_a_safe_hash() -> None:
    with pytest.raises(ValueError):
        provider_key("k", 16)


@pytest.mark.parametrize(
    ("amount", "currency", "value"),
    [
        (5000, "CLP", 500000),  # ISO 0 decimals, Adyen 2
        (1500, "ISK", 150000),  # ISO 0, Adyen 2
        (1500000, "IDR", 15000),  # ISO 2, Adyen 0
        (120000, "CVE", 1200),  # ISO 2, Adyen 0
        (500, "JPY", 500),
        (1250, "EUR", 1250),
        (1234, "KWD", 1234),  # three decimals on both sides
    ],
)
def test_adyen_amounts_use_adyens_exponents(amount: int, currency: str, value: int) -> None:
    assert adyen.to_adyen_amount(amount, currency) == {"currency": currency, "value": value}
    assert adyen.from_adyen_amount({"currency": currency, "value": value}) == amount


@pytest.mark.parametrize(("amount", "currency"), [(1500050, "IDR"), (120001, "CVE")])
def test_adyen_refuses_amounts_it_would_round(amount: int, currency: str) -> None:
    with pytest.raises(adyen.AmountNotRepresentable):
        adyen.to_adyen_amount(amount, currency)


def test_adyen_value_with_decimals_iso_lacks_is_refused() -> None:
    with pytest.raises(ValueError):
        adyen.from_adyen_amount({"currency": "CLP", "value": 123450})
