"""The operations page's in-memory figures, with an injected clock."""

from __future__ import annotations

from switch.ops_stats import TPS_WINDOW_S, WINDOW_S, OpsStats, Unresolved


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_throughput_approval_latency_and_share_per_account():
    clock = Clock()
    stats = OpsStats(clock)
    for _ in range(TPS_WINDOW_S):
        for i in range(4):
            stats.record_authorization(
                "adyen-eu", "card", "captured" if i else "declined", None if i else "do_not_honor", 0.010 + i * 0.001
            )
        stats.record_authorization("stripe", "card", "authorized", None, 0.200)
        clock.now += 1
    snap = stats.snapshot()
    assert snap.attempts == 5 * TPS_WINDOW_S
    assert snap.tps == 5.0
    adyen, stripe = snap.accounts
    assert (adyen.account, stripe.account) == ("adyen-eu", "stripe")
    assert adyen.tps == 4.0 and stripe.tps == 1.0
    assert adyen.approval_rate_bp == 7_500 and stripe.approval_rate_bp == 10_000
    assert adyen.share_bp == 8_000 and stripe.share_bp == 2_000
    assert adyen.p50_ms == 12 and adyen.p99_ms == 13
    assert stripe.p50_ms == 200
    assert snap.declines[0].code == "do_not_honor" and snap.declines[0].count == TPS_WINDOW_S
    assert snap.recent_declines[0].account == "adyen-eu"
    assert snap.tps_series[-TPS_WINDOW_S:] == [5] * TPS_WINDOW_S
    assert len(snap.tps_series) == WINDOW_S


def test_figures_leave_the_window_as_time_passes():
    clock = Clock()
    stats = OpsStats(clock)
    stats.record_authorization("stripe", "card", "declined", "insufficient_funds", 0.05)
    clock.now += 1
    assert stats.snapshot().attempts == 1
    assert stats.snapshot().tps == 0.1
    clock.now += TPS_WINDOW_S
    assert stats.snapshot().tps == 0.0
    assert stats.snapshot().attempts == 1
    clock.now += WINDOW_S
    snap = stats.snapshot()
    assert snap.attempts == 0 and snap.accounts == [] and snap.declines == [] and snap.recent_declines == []


def test_the_current_second_does_not_count_towards_throughput_until_it_is_over():
    clock = Clock(500.5)
    stats = OpsStats(clock)
    stats.record_authorization("stripe", "card", "captured", None, 0.01)
    assert stats.snapshot().tps == 0.0
    clock.now += 1
    assert stats.snapshot().tps == 0.1


def test_unresolved_reading_is_shown_as_given():
    snap = OpsStats(Clock()).snapshot(Unresolved(count=3, stuck=1, oldest_age_s=720))
    assert snap.unresolved == Unresolved(count=3, stuck=1, oldest_age_s=720)
    assert OpsStats(Clock()).snapshot().unresolved.count == 0


def test_decline_codes_stay_bounded():
    stats = OpsStats(Clock())
    for i in range(500):
        stats.record_authorization("stripe", "card", "declined", f"code_{i}", 0.01)
    snap = stats.snapshot()
    assert len(snap.declines) <= 10
    assert len(snap.recent_declines) <= 20
