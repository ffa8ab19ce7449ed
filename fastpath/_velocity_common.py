"""Configuration and input checks shared by both velocity implementations."""

from collections.abc import Sequence

from fastpath._money import check_range

#: Upper bounds that keep a misconfiguration from allocating absurd amounts of memory.
MAX_WINDOW_SECONDS: int = 10**7
MAX_BUCKETS: int = 3600
MAX_KEYS: int = 10**7
MAX_DISTINCT_CAP: int = 1024
#: Clock readings are milliseconds in an int64; this keeps ``seconds * 1000`` well inside it.
MAX_CLOCK_SECONDS: float = 9.2e15


def check_config(
    windows: Sequence[int],
    buckets: int,
    max_keys: int,
    distinct_cap: int,
) -> tuple[int, ...]:
    """Validate a ``VelocityCounters`` configuration.

    Args:
        windows: Window lengths in whole seconds.
        buckets: Buckets per window; each window's length in milliseconds must divide by it.
        max_keys: The key cap.
        distinct_cap: Distinct values remembered per key.

    Returns:
        The windows as a tuple.

    Raises:
        TypeError: a parameter is not an int (or ``windows`` not a sequence of ints).
        ValueError: a parameter is out of range.
    """
    if isinstance(windows, str | bytes) or not isinstance(windows, Sequence):
        raise TypeError(f"windows must be a sequence of seconds, not {type(windows).__name__}")
    checked = tuple(check_range(window, "window", 1, MAX_WINDOW_SECONDS) for window in windows)
    if not checked:
        raise ValueError("windows must not be empty")
    check_range(buckets, "buckets", 1, MAX_BUCKETS)
    check_range(max_keys, "max_keys", 1, MAX_KEYS)
    check_range(distinct_cap, "distinct_cap", 0, MAX_DISTINCT_CAP)
    for window in checked:
        if window * 1000 % buckets:
            raise ValueError(f"window of {window} s is not a whole number of milliseconds per bucket ({buckets})")
    return checked


def key_error(key: object) -> TypeError:
    """Build the error for a key that is not a string."""
    return TypeError(f"velocity key must be a str, not {type(key).__name__}")


def clock_error(seconds: float) -> ValueError:
    """Build the error for a clock reading outside ``[0, MAX_CLOCK_SECONDS)``."""
    return ValueError(f"clock returned {seconds!r} seconds, expected 0 <= t < {MAX_CLOCK_SECONDS!r}")


def check_distinct_values(keys: Sequence[object], distinct_values: Sequence[object] | None) -> None:
    """Check that ``distinct_values`` pairs one value with each key, when given."""
    if distinct_values is not None and len(distinct_values) != len(keys):
        raise ValueError(
            f"distinct_values has {len(distinct_values)} entries for {len(keys)} keys; "
            "pass one per key (None where a key tracks no distinct value)"
        )


__all__ = ["check_config", "check_distinct_values", "clock_error", "key_error"]
