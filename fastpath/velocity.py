"""Sliding-window velocity counters: count, amount sum and capped distinct count per key.

Usage::

    from fastpath.velocity import VelocityCounters

    counters = VelocityCounters(windows=(60, 3600, 86400))
    card, email, ip = counters.add_many(
        ["card:tok_1", "email:a@example.com", "ip:203.0.113.9"],
        amount=1999,
        distinct_values=[None, "tok_1", "tok_1"],   # distinct cards per email, per IP
    )
    count_1m, sum_1m, distinct_cards_1m = ip[0]
"""

from fastpath._compat import NO_EXTENSIONS

IMPLEMENTATION: str
if not NO_EXTENSIONS:
    try:
        from fastpath._velocity_c import Snapshot, VelocityCounters, WindowStats

        IMPLEMENTATION = "c"
    except ImportError:  # not built: the tests refuse this unless SWITCH_NO_EXTENSIONS is set
        from fastpath._velocity_py import Snapshot, VelocityCounters, WindowStats

        IMPLEMENTATION = "py"
else:
    from fastpath._velocity_py import Snapshot, VelocityCounters, WindowStats

    IMPLEMENTATION = "py"

__all__ = ["IMPLEMENTATION", "Snapshot", "VelocityCounters", "WindowStats"]
