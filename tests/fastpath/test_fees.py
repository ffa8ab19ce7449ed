"""fastpath.fees against both implementations: known answers, rounding, ranking, bad input."""

from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastpath._money import INT64_MAX, MAX_AMOUNT
from fastpath._types import FeeSchedule

STRIPE_US = FeeSchedule(percent_centibps=29_000, fixed_minor=30, cross_border_centibps=15_000, fx_centibps=10_000)


def test_stripe_2_9_percent_plus_30_on_10_usd_is_59_cents(fees):
    assert fees.quote_fee(FeeSchedule(percent_centibps=29_000, fixed_minor=30), 1000) == 59


def test_cross_border_and_fx_surcharges_add_to_the_percentage(fees):
    # 10.00 at 2.9 % + 1.5 % + 1 % = 54 cents, + 30 fixed.
    assert fees.quote_fee(STRIPE_US, 1000, cross_border=True, needs_fx=True) == 84
    assert fees.quote_fee(STRIPE_US, 1000, cross_border=True) == 74
    assert fees.quote_fee(STRIPE_US, 1000, needs_fx=True) == 69


def test_fractional_basis_points_are_exact(fees):
    # 0.01 bp of 10^15 is 10^9 exactly.
    assert fees.quote_fee(FeeSchedule(percent_centibps=1), MAX_AMOUNT) == 10**9


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (50, 0),  # 0.5 rounds to the even 0
        (150, 2),  # 1.5 rounds to the even 2
        (250, 2),  # 2.5 rounds to the even 2
        (251, 3),  # 2.51 rounds up
        (249, 2),  # 2.49 rounds down
    ],
)
def test_one_half_even_rounding_at_the_end(fees, amount, expected):
    assert fees.quote_fee(FeeSchedule(percent_centibps=10_000), amount) == expected


def test_half_even_applies_to_the_sum_of_percentages_not_each_part(fees):
    # 0.5 % + 0.5 % of 50 = 0.25 + 0.25 = 0.5 -> 0; rounding each part first would give 0 + 0 too,
    # but 0.3 % + 0.3 % of 250 = 0.75 + 0.75 = 1.5 -> 2 where per-part rounding gives 1 + 1 = 2;
    # 0.2 % + 0.2 % of 250 = 0.5 + 0.5 = 1.0 -> 1 where per-part half-even would give 0 + 0.
    schedule = FeeSchedule(percent_centibps=2_000, cross_border_centibps=2_000)
    assert fees.quote_fee(schedule, 250, cross_border=True) == 1


def test_minimum_and_maximum_fee_clamp_the_total(fees):
    floor_and_cap = FeeSchedule(percent_centibps=10_000, fixed_minor=5, min_fee=20, max_fee=500)
    assert fees.quote_fee(floor_and_cap, 100) == 20
    assert fees.quote_fee(floor_and_cap, 10_000) == 105
    assert fees.quote_fee(floor_and_cap, 1_000_000) == 500


def test_zero_max_fee_means_no_cap(fees):
    assert fees.quote_fee(FeeSchedule(percent_centibps=1_000_000), MAX_AMOUNT) == MAX_AMOUNT


def test_10_000_bps_on_the_largest_amount_with_all_surcharges_does_not_overflow(fees):
    everything = FeeSchedule(
        percent_centibps=1_000_000, cross_border_centibps=1_000_000, fx_centibps=1_000_000, fixed_minor=7
    )
    assert fees.quote_fee(everything, MAX_AMOUNT, cross_border=True, needs_fx=True) == 3 * MAX_AMOUNT + 7


def test_rank_orders_by_fee_with_ties_in_input_order(fees):
    schedules = [
        FeeSchedule(percent_centibps=29_000, fixed_minor=30),  # 59
        FeeSchedule(percent_centibps=14_000, fixed_minor=25, cross_border_centibps=15_000),  # 39 / 54
        FeeSchedule(fixed_minor=59),  # 59
        FeeSchedule(percent_centibps=5_000, min_fee=45),  # 45
    ]
    assert fees.rank_quotes(schedules, 1000) == [(1, 39), (3, 45), (0, 59), (2, 59)]
    assert fees.rank_quotes(schedules, 1000, cross_border=True) == [(3, 45), (1, 54), (0, 59), (2, 59)]


def test_fee_table_is_built_once_and_reused(fees):
    schedules = [FeeSchedule(percent_centibps=i * 1_000, fixed_minor=100 - i) for i in range(40)]
    table = fees.FeeTable(schedules)
    assert len(table) == 40
    assert table.schedules == tuple(schedules)
    ranked = table.rank(10_000)
    assert ranked == fees.rank_quotes(schedules, 10_000)
    assert ranked == sorted(((i, fees.quote_fee(s, 10_000)) for i, s in enumerate(schedules)), key=lambda p: p[1])
    assert [table.quote(i, 10_000) for i in range(40)] == [fees.quote_fee(s, 10_000) for s in schedules]


def test_empty_fee_table_ranks_nothing(fees):
    assert fees.FeeTable([]).rank(100) == []


@pytest.mark.parametrize("amount", [0, -1, -(2**63)])
def test_non_positive_amount_is_rejected(fees, amount):
    with pytest.raises(ValueError, match=rf"^amount must be at least 1 minor unit\(s\), got {amount}$"):
        fees.quote_fee(STRIPE_US, amount)
    with pytest.raises(ValueError, match=r"^amount must be at least"):
        fees.FeeTable([STRIPE_US]).rank(amount)


def test_amount_above_10_15_is_rejected(fees):
    with pytest.raises(ValueError, match=r"^amount 1000000000000001 exceeds the maximum of 10\*\*15 minor units$"):
        fees.quote_fee(STRIPE_US, MAX_AMOUNT + 1)


@pytest.mark.parametrize("amount", [2**63, -(2**63) - 1, 10**30])
def test_amount_beyond_int64_is_rejected(fees, amount):
    with pytest.raises(ValueError, match=rf"^amount {amount} overflows int64$"):
        fees.quote_fee(STRIPE_US, amount)
    with pytest.raises(ValueError, match=rf"^amount {amount} overflows int64$"):
        fees.rank_quotes([STRIPE_US], amount)


@pytest.mark.parametrize("amount", [10.0, "10", None, True])
def test_amount_that_is_not_an_int_is_a_type_error(fees, amount):
    with pytest.raises(TypeError, match=r"^amount must be an int, not "):
        fees.quote_fee(STRIPE_US, amount)


def test_fee_that_overflows_int64_is_rejected(fees):
    huge_fixed = FeeSchedule(percent_centibps=1_000_000, fixed_minor=INT64_MAX - 10)
    assert fees.quote_fee(huge_fixed, 10) == INT64_MAX
    with pytest.raises(ValueError, match=r"^fee for amount 11 overflows int64$"):
        fees.quote_fee(huge_fixed, 11)
    with pytest.raises(ValueError, match=r"^fee for amount 11 overflows int64$"):
        fees.rank_quotes([STRIPE_US, huge_fixed], 11)


def test_schedule_that_is_not_a_fee_schedule_is_a_type_error(fees):
    with pytest.raises(TypeError, match=r"^schedule must be a FeeSchedule, not dict$"):
        fees.quote_fee({"percent_centibps": 1}, 100)
    with pytest.raises(TypeError, match=r"^schedules\[1\] must be a FeeSchedule, not int$"):
        fees.FeeTable([STRIPE_US, 3])


def test_fee_table_index_out_of_range_is_an_index_error(fees):
    table = fees.FeeTable([STRIPE_US])
    with pytest.raises(IndexError, match=r"^fee table index 1 out of range 0\.\.0$"):
        table.quote(1, 100)
    with pytest.raises(IndexError):
        table.quote(-1, 100)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"percent_centibps": -1}, r"^percent_centibps must be between 0 and 1000000, got -1$"),
        ({"fx_centibps": 1_000_001}, r"^fx_centibps must be between 0 and 1000000, got 1000001$"),
        ({"fixed_minor": 2**63}, r"^fixed_minor 9223372036854775808 overflows int64$"),
        ({"min_fee": -5}, r"^min_fee must be between 0 and"),
        ({"min_fee": 10, "max_fee": 5}, r"^min_fee 10 is above max_fee 5$"),
    ],
)
def test_invalid_schedule_is_rejected_when_built(fields, message):
    with pytest.raises(ValueError, match=message):
        FeeSchedule(**fields)


def _oracle_fee(schedule: FeeSchedule, amount: int, cross_border: bool, needs_fx: bool) -> int | None:
    """The definition, with fractions: None when the fee overflows int64."""
    centibps = schedule.percent_centibps
    centibps += schedule.cross_border_centibps if cross_border else 0
    centibps += schedule.fx_centibps if needs_fx else 0
    fee = round(Fraction(amount * centibps, 1_000_000) + schedule.fixed_minor)  # round() is half-even
    if fee > INT64_MAX:
        return None
    fee = max(fee, schedule.min_fee)
    return min(fee, schedule.max_fee) if schedule.max_fee else fee


centibps = st.one_of(st.sampled_from([0, 1, 10_000, 1_000_000]), st.integers(0, 1_000_000))
amounts = st.one_of(st.sampled_from([1, 2, 10**15]), st.integers(1, 10**15))
fixed = st.one_of(st.sampled_from([0, 30, INT64_MAX]), st.integers(0, 10**6), st.integers(0, INT64_MAX))


@st.composite
def schedules(draw: st.DrawFn) -> FeeSchedule:
    low = draw(st.one_of(st.just(0), st.integers(0, 10**6)))
    high = draw(st.one_of(st.just(0), st.integers(low, 10**7)))
    return FeeSchedule(
        percent_centibps=draw(centibps),
        fixed_minor=draw(fixed),
        cross_border_centibps=draw(centibps),
        fx_centibps=draw(centibps),
        min_fee=low,
        max_fee=high,
    )


@settings(max_examples=300, deadline=None)
@given(schedule=schedules(), amount=amounts, cross_border=st.booleans(), needs_fx=st.booleans())
@example(schedule=FeeSchedule(percent_centibps=29_000, fixed_minor=30), amount=1000, cross_border=False, needs_fx=False)
def test_fee_equals_the_exact_fraction_rounded_half_even(fees, schedule, amount, cross_border, needs_fx):
    expected = _oracle_fee(schedule, amount, cross_border, needs_fx)
    if expected is None:
        with pytest.raises(ValueError, match="overflows int64"):
            fees.quote_fee(schedule, amount, cross_border, needs_fx)
    else:
        assert fees.quote_fee(schedule, amount, cross_border, needs_fx) == expected
