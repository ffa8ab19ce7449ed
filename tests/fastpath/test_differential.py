"""Compiled == pure: the same generated inputs give the same results and the same errors."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpath._money import INT64_MAX, MAX_AMOUNT
from fastpath._types import FeeSchedule

from .conftest import FakeClock


def outcome(call: Callable[[], Any]) -> Any:
    """The result, or the exception's type and message, so errors are compared too."""
    try:
        return call()
    except (ValueError, TypeError, IndexError) as exc:
        return type(exc), str(exc)


# Valid edges first, then everything a caller could get wrong.
amounts = st.one_of(
    st.sampled_from([1, 2, 10**15, 10**15 + 1, 0, -1, INT64_MAX, INT64_MAX + 1, -(2**63) - 1]),
    st.integers(1, 10**15),
    st.integers(-(2**70), 2**70),
)
centibps = st.one_of(st.sampled_from([0, 1, 10_000, 1_000_000]), st.integers(0, 1_000_000))
money = st.one_of(st.sampled_from([0, 30, INT64_MAX]), st.integers(0, 10**9), st.integers(0, INT64_MAX))


@st.composite
def schedules(draw: st.DrawFn) -> FeeSchedule:
    low = draw(money)
    high = draw(st.one_of(st.just(0), st.integers(low, INT64_MAX)))
    return FeeSchedule(
        percent_centibps=draw(centibps),
        fixed_minor=draw(money),
        cross_border_centibps=draw(centibps),
        fx_centibps=draw(centibps),
        min_fee=low,
        max_fee=high,
    )


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(schedule=schedules(), amount=amounts, cross_border=st.booleans(), needs_fx=st.booleans())
def test_quote_fee_compiled_equals_pure(fees_pair, schedule, amount, cross_border, needs_fx):
    compiled, pure = fees_pair
    assert outcome(lambda: compiled.quote_fee(schedule, amount, cross_border, needs_fx)) == outcome(
        lambda: pure.quote_fee(schedule, amount, cross_border, needs_fx)
    )


@SETTINGS
@given(
    table=st.lists(schedules(), max_size=40),
    amount=amounts,
    cross_border=st.booleans(),
    needs_fx=st.booleans(),
    index=st.integers(-2, 42),
)
def test_rank_and_table_quote_compiled_equal_pure(fees_pair, table, amount, cross_border, needs_fx, index):
    compiled, pure = fees_pair
    compiled_table, pure_table = compiled.FeeTable(table), pure.FeeTable(table)
    assert outcome(lambda: compiled_table.rank(amount, cross_border, needs_fx)) == outcome(
        lambda: pure_table.rank(amount, cross_border, needs_fx)
    )
    assert outcome(lambda: compiled.rank_quotes(table, amount, cross_border, needs_fx)) == outcome(
        lambda: pure.rank_quotes(table, amount, cross_border, needs_fx)
    )
    assert outcome(lambda: compiled_table.quote(index, amount, cross_border, needs_fx)) == outcome(
        lambda: pure_table.quote(index, amount, cross_border, needs_fx)
    )


# Every ISO exponent (0, 2, 3, 4), the base, a currency with no rate and a code ISO does not know.
RATED = ["JPY", "KRW", "USD", "GBP", "IDR", "KWD", "BHD", "CLF", "UYW"]
CODES = ["EUR", *RATED, "VND", "XYZ"]


@st.composite
def rates(draw: st.DrawFn) -> str:
    decimals = draw(st.integers(0, 12))
    limit = min(10**16, INT64_MAX // 10 ** (12 - decimals))
    mantissa = draw(st.one_of(st.sampled_from([1, limit]), st.integers(1, limit)))
    return format(Decimal(mantissa).scaleb(-decimals), "f")


@SETTINGS
@given(
    table=st.fixed_dictionaries({code: rates() for code in RATED}),
    amount=amounts,
    source=st.sampled_from(CODES),
    target=st.sampled_from(CODES),
    markup=st.one_of(st.sampled_from([0, 10_000, -1, 10_001]), st.integers(0, 10_000)),
)
def test_convert_compiled_equals_pure(fx_pair, table, amount, source, target, markup):
    compiled, pure = fx_pair
    compiled_table, pure_table = compiled.RateTable(table), pure.RateTable(table)
    assert compiled_table.rates() == pure_table.rates()
    assert outcome(lambda: compiled_table.convert(amount, source, target, markup)) == outcome(
        lambda: pure_table.convert(amount, source, target, markup)
    )


velocity_ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "add_many", "check", "check_many", "evict"]),
        st.sampled_from([0, 0.001, 0.999, 1, 2.5, 59, 61, 3599, 3601, 86401, -5]),
        st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=6),
        st.one_of(st.sampled_from([0, 1, MAX_AMOUNT, -1, MAX_AMOUNT + 1]), st.integers(0, 10**9)),
        st.lists(st.one_of(st.none(), st.sampled_from(["x", "y", "z", "w", 7])), min_size=6, max_size=6),
    ),
    max_size=50,
)


@SETTINGS
@given(
    ops=velocity_ops,
    config=st.sampled_from([((60, 3600, 86400), 30), ((1, 60), 4), ((10,), 1), ((5, 600), 5)]),
    max_keys=st.sampled_from([1, 2, 3, 100]),
    cap=st.sampled_from([0, 1, 3, 25]),
)
def test_velocity_compiled_equals_pure(velocity_pair, ops, config, max_keys, cap):
    compiled, pure = velocity_pair
    windows, buckets = config
    clocks = FakeClock(500.0), FakeClock(500.0)
    counters = [
        module.VelocityCounters(windows, buckets=buckets, max_keys=max_keys, distinct_cap=cap, clock=clock)
        for module, clock in zip((compiled, pure), clocks, strict=True)
    ]
    for kind, step, keys, amount, values in ops:
        results = []
        for clock, counter in zip(clocks, counters, strict=True):
            clock.advance(step)
            result = outcome(lambda c=counter, k=kind, ks=keys, a=amount, vs=values: _velocity_call(c, k, ks, a, vs))
            results.append((result, len(counter), [key in counter for key in "abcde"]))
        assert results[0] == results[1]


def _velocity_call(counter: Any, kind: str, keys: list[str], amount: int, values: list[Any]) -> Any:
    if kind == "add":
        return counter.add(keys[0], amount, values[0])
    if kind == "add_many":
        return counter.add_many(keys, amount, values[: len(keys)])
    if kind == "check":
        return counter.check(keys[0])
    if kind == "check_many":
        return counter.check_many(keys)
    return counter.evict_idle()
