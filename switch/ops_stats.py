"""In-memory aggregates for the live operations page (``/dashboard``).

The payment path feeds :meth:`OpsStats.record_authorization` once per answered authorization; the
page's JSON endpoint calls :meth:`OpsStats.snapshot` once a second per viewer. Both are O(accounts)
plus a small sort of recent latencies, and neither touches the database. Each worker process keeps
its own figures: with several workers the page shows the worker that answers it, and Prometheus
(``/metrics``) is where the workers are summed.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

import msgspec

APPROVED_STATUSES = frozenset({"authorized", "captured"})
WINDOW_S = 60  # approval rate, latency and routing share
TPS_WINDOW_S = 10  # "current" throughput
RECENT_DECLINES = 20
_MAX_LATENCIES = 2_048  # per account; enough for a stable p99 over the window
_MAX_CODES = 64  # decline codes come from adapters' maps, but stay bounded whatever they send
_MAX_ACCOUNTS = 256


class AccountFigures(msgspec.Struct, frozen=True, kw_only=True):
    """One provider account over the window."""

    account: str
    tps: float
    attempts: int
    approved: int
    approval_rate_bp: int
    p50_ms: int
    p99_ms: int
    share_bp: int


class DeclineCount(msgspec.Struct, frozen=True):
    """How often one decline code was answered over the window."""

    code: str
    count: int


class RecentDecline(msgspec.Struct, frozen=True, kw_only=True):
    """One recent decline, newest first on the page."""

    at: int
    account: str
    method: str
    code: str


class Unresolved(msgspec.Struct, frozen=True, kw_only=True):
    """Intents whose provider outcome is not settled (from recovery's last reading)."""

    count: int
    stuck: int
    oldest_age_s: int


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What ``/dashboard/data`` answers."""

    generated_at: int
    window_s: int
    tps: float
    attempts: int
    approved: int
    approval_rate_bp: int
    tps_series: list[int]
    accounts: list[AccountFigures]
    declines: list[DeclineCount]
    recent_declines: list[RecentDecline]
    unresolved: Unresolved


class _Second(msgspec.Struct):
    second: int
    attempts: int = 0
    approved: int = 0


class _Account:
    __slots__ = ("latencies", "seconds")

    def __init__(self) -> None:
        self.seconds: collections.deque[_Second] = collections.deque(maxlen=WINDOW_S)
        self.latencies: collections.deque[tuple[float, float]] = collections.deque(maxlen=_MAX_LATENCIES)


def _rate_bp(part: int, whole: int) -> int:
    return part * 10_000 // whole if whole else 0


def _percentile_ms(values: list[float], fraction_bp: int) -> int:
    if not values:
        return 0
    values.sort()
    index = min(len(values) - 1, len(values) * fraction_bp // 10_000)
    return round(values[index] * 1000)


class OpsStats:
    """Sliding-window figures per provider account, fed by the payment path.

    Args:
        clock: Seconds, monotonic or wall; injected so tests move time without sleeping.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        """Start with empty windows."""
        self._clock = clock
        self._accounts: dict[str, _Account] = {}
        self._totals: collections.deque[_Second] = collections.deque(maxlen=WINDOW_S)
        self._declines: collections.deque[tuple[float, str]] = collections.deque(maxlen=4_096)
        self._recent: collections.deque[RecentDecline] = collections.deque(maxlen=RECENT_DECLINES)

    def record_authorization(
        self, account: str, method: str, status: str, decline_code: str | None, latency_s: float
    ) -> None:
        """Count one answered authorization.

        Args:
            account: Provider account that decided it (``"none"`` when none was called).
            method: Payment method type.
            status: Payment status answered (``authorized`` and ``captured`` count as approved).
            decline_code: The decline code, when the payment was declined.
            latency_s: Time the switch spent on it.
        """
        now = self._clock()
        second = int(now)
        approved = status in APPROVED_STATUSES
        figures = self._accounts.get(account)
        if figures is None:
            if len(self._accounts) >= _MAX_ACCOUNTS:
                account = "other"
                figures = self._accounts.setdefault(account, _Account())
            else:
                figures = self._accounts[account] = _Account()
        for seconds in (figures.seconds, self._totals):
            if not seconds or seconds[-1].second != second:
                seconds.append(_Second(second))
            bucket = seconds[-1]
            bucket.attempts += 1
            bucket.approved += approved
        figures.latencies.append((now, latency_s))
        if decline_code is not None:
            self._declines.append((now, decline_code))
            self._recent.appendleft(RecentDecline(at=second, account=account, method=method, code=decline_code))

    def snapshot(self, unresolved: Unresolved | None = None) -> Snapshot:
        """Return the figures of the last :data:`WINDOW_S` seconds.

        Args:
            unresolved: Recovery's latest reading of unsettled intents, shown as is.
        """
        now = self._clock()
        second = int(now)
        oldest = second - WINDOW_S + 1
        tps_from = second - TPS_WINDOW_S
        rows: list[tuple[str, int, int, int, list[float]]] = []
        for name, figures in self._accounts.items():
            attempts = approved = recent = 0
            for bucket in figures.seconds:
                if bucket.second >= oldest:
                    attempts += bucket.attempts
                    approved += bucket.approved
                if tps_from <= bucket.second < second:
                    recent += bucket.attempts
            if attempts:
                latencies = [latency for at, latency in figures.latencies if at >= oldest]
                rows.append((name, attempts, approved, recent, latencies))
        total = sum(row[1] for row in rows)
        accounts = [
            AccountFigures(
                account=name,
                tps=round(recent / TPS_WINDOW_S, 1),
                attempts=attempts,
                approved=approved,
                approval_rate_bp=_rate_bp(approved, attempts),
                p50_ms=_percentile_ms(latencies, 5_000),
                p99_ms=_percentile_ms(latencies, 9_900),
                share_bp=_rate_bp(attempts, total),
            )
            for name, attempts, approved, recent, latencies in sorted(rows, key=lambda row: -row[1])
        ]
        per_second = {bucket.second: bucket.attempts for bucket in self._totals}
        # The current second is still filling up; the series and TPS use whole seconds only.
        series = [per_second.get(s, 0) for s in range(second - WINDOW_S, second)]
        counts: collections.Counter[str] = collections.Counter()
        for at, code in self._declines:
            if at >= oldest:
                counts[code if len(counts) < _MAX_CODES or code in counts else "other"] += 1
        approved_total = sum(row[2] for row in rows)
        return Snapshot(
            generated_at=second,
            window_s=WINDOW_S,
            tps=round(sum(series[-TPS_WINDOW_S:]) / TPS_WINDOW_S, 1),
            attempts=total,
            approved=approved_total,
            approval_rate_bp=_rate_bp(approved_total, total),
            tps_series=series,
            accounts=accounts,
            declines=[DeclineCount(code, count) for code, count in counts.most_common(10)],
            recent_declines=[decline for decline in self._recent if decline.at >= oldest],
            unresolved=unresolved or Unresolved(count=0, stuck=0, oldest_age_s=0),
        )
