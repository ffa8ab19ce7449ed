"""fastpath.velocity against both implementations: windows, distinct caps, eviction, bad input."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpath._money import INT64_MAX, MAX_AMOUNT

from .conftest import FakeClock

ZERO = ((0, 0, 0), (0, 0, 0), (0, 0, 0))


@pytest.fixture
def counters(velocity, clock):
    return velocity.VelocityCounters(windows=(60, 3600, 86400), buckets=60, clock=clock)


def test_add_counts_amount_and_returns_every_window(counters):
    assert counters.add("card:1", 500) == ((1, 500, 0), (1, 500, 0), (1, 500, 0))
    assert counters.add("card:1", 250) == ((2, 750, 0), (2, 750, 0), (2, 750, 0))
    assert counters.check("card:1") == ((2, 750, 0), (2, 750, 0), (2, 750, 0))


def test_unknown_key_reads_as_zero_and_is_not_created(counters):
    assert counters.check("nobody") == ZERO
    assert "nobody" not in counters
    assert len(counters) == 0


def test_events_leave_the_short_window_first(counters, clock):
    counters.add("ip:1", 100)
    clock.advance(30)
    counters.add("ip:1", 10)
    clock.advance(31)  # the first event is 61 s old, the second 31 s
    assert counters.check("ip:1") == ((1, 10, 0), (2, 110, 0), (2, 110, 0))
    clock.advance(3600)
    assert counters.check("ip:1") == ((0, 0, 0), (0, 0, 0), (2, 110, 0))
    clock.advance(86400)
    assert counters.check("ip:1") == ZERO


def test_window_is_bucket_aligned(velocity, clock):
    # 10 s window in 10 buckets of 1 s: an event stays while its bucket is among the last ten.
    counters = velocity.VelocityCounters(windows=(10,), buckets=10, clock=clock)
    clock.now = 100.9
    counters.add("k", 1)
    clock.now = 109.99
    assert counters.check("k") == ((1, 1, 0),)
    clock.now = 110.0
    assert counters.check("k") == ((0, 0, 0),)


def test_distinct_values_are_counted_per_window_and_capped(velocity, clock):
    counters = velocity.VelocityCounters(windows=(60, 3600), buckets=60, distinct_cap=3, clock=clock)
    for card in ("a", "b", "a"):
        snapshot = counters.add("ip:9", 1, card)
    assert snapshot == ((3, 3, 2), (3, 3, 2))
    clock.advance(120)
    counters.add("ip:9", 1, "c")
    assert counters.check("ip:9") == ((1, 1, 1), (4, 4, 3))
    for card in ("d", "e", "f"):
        counters.add("ip:9", 1, card)
    # Six distinct cards in the hour, capped at three; the minute has four, capped too.
    assert counters.check("ip:9") == ((4, 4, 3), (7, 7, 3))


def test_distinct_cap_keeps_the_most_recent_values(velocity, clock):
    counters = velocity.VelocityCounters(windows=(60, 3600), buckets=60, distinct_cap=2, clock=clock)
    counters.add("k", 0, "old-1")
    counters.add("k", 0, "old-2")
    clock.advance(120)
    counters.add("k", 0, "new")  # replaces old-1, the value seen longest ago
    assert counters.check("k") == ((1, 0, 1), (3, 0, 2))


def test_add_many_updates_five_keys_over_three_windows(counters):
    keys = ["card:1", "email:a@example.com", "ip:203.0.113.9", "device:d1", "merchant:m1"]
    first = counters.add_many(keys, 1999, [None, "card:1", "card:1", "card:1", None])
    assert first == [
        ((1, 1999, 0),) * 3,
        ((1, 1999, 1),) * 3,
        ((1, 1999, 1),) * 3,
        ((1, 1999, 1),) * 3,
        ((1, 1999, 0),) * 3,
    ]
    second = counters.add_many(keys, 1, [None, "card:2", "card:2", "card:1", None])
    assert [snapshot[0] for snapshot in second] == [
        (2, 2000, 0),
        (2, 2000, 2),
        (2, 2000, 2),
        (2, 2000, 1),
        (2, 2000, 0),
    ]
    assert counters.check_many(keys) == second


def test_a_key_repeated_in_one_batch_is_counted_each_time(counters):
    assert counters.add_many(["k", "k"], 5) == [((1, 5, 0),) * 3, ((2, 10, 0),) * 3]


def test_zero_amount_counts_an_event(counters):
    assert counters.add("declines:card:1", 0) == ((1, 0, 0),) * 3


def test_keys_idle_past_the_longest_window_are_evicted(velocity, clock):
    counters = velocity.VelocityCounters(windows=(60, 3600), clock=clock)
    counters.add("old", 1)
    clock.advance(1800)
    counters.add("recent", 1)
    clock.advance(1800)  # "old" idle for exactly its longest window
    assert counters.evict_idle() == 1
    assert "old" not in counters and "recent" in counters
    clock.advance(3600)
    counters.add("new", 1)  # updates evict as they go
    assert "recent" not in counters
    assert len(counters) == 1


def test_key_cap_evicts_the_least_recently_updated(velocity, clock):
    counters = velocity.VelocityCounters(windows=(60,), max_keys=2, clock=clock)
    counters.add("a", 1)
    counters.add("b", 1)
    counters.add("a", 1)  # "b" is now least recently updated
    counters.check("b")  # reading does not refresh it
    counters.add("c", 1)
    assert ("a" in counters, "b" in counters, "c" in counters) == (True, False, True)
    assert counters.check("b") == ((0, 0, 0),)
    assert counters.check("a") == ((2, 2, 0),)


def test_key_cap_reuses_memory_for_many_keys(velocity, clock):
    counters = velocity.VelocityCounters(windows=(60,), buckets=6, max_keys=100, clock=clock)
    for i in range(5000):
        counters.add(f"k{i}", i, f"v{i % 7}")
    assert len(counters) == 100
    assert counters.check("k4999") == ((1, 4999, 1),)
    assert "k4899" not in counters and "k4900" in counters


def test_a_clock_that_steps_back_is_held_at_its_latest_reading(counters, clock):
    counters.add("k", 1)
    clock.advance(120)
    counters.add("k", 1)
    clock.advance(-100)
    assert counters.check("k")[0] == (1, 1, 0)


def test_clock_may_return_ints(velocity):
    ticks = iter(range(1000, 2000))
    counters = velocity.VelocityCounters(windows=(60,), clock=lambda: next(ticks))
    assert counters.add("k", 3) == ((1, 3, 0),)


@pytest.mark.parametrize("reading", [-1.0, float("nan"), float("inf"), 1e16])
def test_clock_reading_out_of_range_is_rejected(velocity, reading):
    counters = velocity.VelocityCounters(windows=(60,), clock=lambda: reading)
    with pytest.raises(ValueError, match=r"^clock returned .* seconds, expected 0 <= t < 9200000000000000\.0$"):
        counters.add("k", 1)


def test_negative_amount_is_rejected(counters):
    with pytest.raises(ValueError, match=r"^amount must be at least 0 minor unit\(s\), got -1$"):
        counters.add("k", -1)
    assert "k" not in counters


def test_amount_above_10_15_or_int64_is_rejected(counters):
    with pytest.raises(ValueError, match=r"exceeds the maximum of 10\*\*15 minor units$"):
        counters.add("k", MAX_AMOUNT + 1)
    with pytest.raises(ValueError, match=r"^amount 9223372036854775808 overflows int64$"):
        counters.add_many(["k"], INT64_MAX + 1)


def test_amount_sum_that_would_overflow_int64_raises_before_counting(velocity, clock):
    counters = velocity.VelocityCounters(windows=(60,), clock=clock)
    fill = INT64_MAX // MAX_AMOUNT  # 9223 events of 10^15 fit, one more does not
    counters.add_many(["a"] * fill, MAX_AMOUNT)
    before = counters.check("a")
    with pytest.raises(ValueError, match=r"^amount sum of key 'a' overflows int64$"):
        counters.add_many(["b", "a"], MAX_AMOUNT)
    assert counters.check("a") == before
    assert "b" not in counters
    assert counters.add("a", INT64_MAX - fill * MAX_AMOUNT) == ((fill + 1, INT64_MAX, 0),)


def test_a_batch_that_would_overflow_through_repeats_counts_nothing(velocity, clock):
    counters = velocity.VelocityCounters(windows=(60,), clock=clock)
    counters.add("a", INT64_MAX - 9223 * MAX_AMOUNT)
    assert counters.add_many(["a"] * 9222, MAX_AMOUNT)[-1] == ((9223, INT64_MAX - MAX_AMOUNT, 0),)
    with pytest.raises(ValueError, match=r"^amount sum of key 'a' overflows int64$"):
        counters.add_many(["a", "a"], MAX_AMOUNT)
    assert counters.check("a") == ((9223, INT64_MAX - MAX_AMOUNT, 0),)


def test_a_new_key_repeated_past_int64_in_one_batch_counts_nothing(velocity, clock):
    counters = velocity.VelocityCounters(windows=(60,), clock=clock)
    with pytest.raises(ValueError, match=r"^amount sum of key 'n' overflows int64$"):
        counters.add_many(["n"] * 9224, MAX_AMOUNT)
    assert "n" not in counters


@pytest.mark.parametrize("key", [b"bytes", 7, None])
def test_key_that_is_not_a_str_is_a_type_error(counters, key):
    with pytest.raises(TypeError, match=r"^velocity key must be a str, not "):
        counters.add(key, 1)
    with pytest.raises(TypeError, match=r"^velocity key must be a str, not "):
        counters.check(key)


def test_unhashable_distinct_value_is_a_type_error(counters):
    with pytest.raises(TypeError, match="unhashable"):
        counters.add("k", 1, ["list"])
    assert "k" not in counters


def test_distinct_values_must_match_keys(counters):
    with pytest.raises(ValueError, match=r"^distinct_values has 1 entries for 2 keys"):
        counters.add_many(["a", "b"], 1, ["x"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"windows": ()}, r"^windows must not be empty$"),
        ({"windows": (0,)}, r"^window must be between 1 and 10000000, got 0$"),
        ({"windows": (7,), "buckets": 3000}, r"^window of 7 s is not a whole number of milliseconds per bucket"),
        ({"buckets": 0}, r"^buckets must be between 1 and 3600, got 0$"),
        ({"max_keys": 0}, r"^max_keys must be between 1 and 10000000, got 0$"),
        ({"distinct_cap": -1}, r"^distinct_cap must be between 0 and 1024, got -1$"),
    ],
)
def test_invalid_configuration_is_rejected(velocity, kwargs, message):
    with pytest.raises(ValueError, match=message):
        velocity.VelocityCounters(**kwargs)


def test_windows_must_be_a_sequence(velocity):
    with pytest.raises(TypeError, match=r"^windows must be a sequence of seconds, not int$"):
        velocity.VelocityCounters(windows=60)


class Model:
    """The definition: every event kept, windows and distinct counts computed from scratch."""

    def __init__(self, windows, buckets, max_keys, cap):
        self.widths = [w * 1000 // buckets for w in windows]
        self.buckets, self.max_keys, self.cap = buckets, max_keys, cap
        self.longest = max(windows) * 1000
        self.events: dict[str, list[tuple[int, int, object]]] = {}  # insertion order = LRU order

    def add(self, key, amount, value, now):
        for idle in [k for k, ev in self.events.items() if ev[-1][0] + self.longest <= now]:
            del self.events[idle]
        if key not in self.events and len(self.events) >= self.max_keys:
            del self.events[next(iter(self.events))]
        events = self.events.pop(key, [])
        events.append((now, amount, value))
        self.events[key] = events
        return self.check(key, now)

    def check(self, key, now):
        events = self.events.get(key, [])
        stats = []
        for width in self.widths:
            start = (now // width - self.buckets + 1) * width
            inside = [e for e in events if e[0] >= start]
            values = {e[2] for e in inside if e[2] is not None}
            stats.append((len(inside), sum(e[1] for e in inside), min(len(values), self.cap)))
        return tuple(stats)


operations = st.lists(
    st.tuples(
        st.sampled_from([0, 0.001, 0.4, 1, 5, 59, 61, 700, 3601, 90000]),
        st.sampled_from(["a", "b", "c", "d"]),
        st.one_of(st.sampled_from([0, 1, MAX_AMOUNT]), st.integers(0, 10**6)),
        st.one_of(st.none(), st.sampled_from(["v1", "v2", "v3", "v4", "v5"])),
        st.booleans(),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=operations,
    config=st.sampled_from([((60, 3600, 86400), 60), ((1, 60), 4), ((10,), 1), ((5, 600), 5)]),
    max_keys=st.sampled_from([1, 2, 3, 100]),
    cap=st.sampled_from([0, 1, 2, 25]),
)
def test_counters_match_the_definition(velocity, ops, config, max_keys, cap):
    windows, buckets = config
    clock = FakeClock(1_000.0)
    counters = velocity.VelocityCounters(windows, buckets=buckets, max_keys=max_keys, distinct_cap=cap, clock=clock)
    model = Model(windows, buckets, max_keys, cap)
    for step, key, amount, value, is_add in ops:
        clock.advance(step)
        now = int(clock.now * 1000.0)
        if is_add:
            assert counters.add(key, amount, value) == model.add(key, amount, value, now)
        else:
            assert counters.check(key) == model.check(key, now)
        assert len(counters) == len(model.events) <= max_keys
