"""Prometheus collectors. Labels are low-cardinality names (provider account, status, reason),
never an id, an amount, a key or anything a customer or merchant typed.

Several worker processes (``switch serve --workers N``) share one set of values through
prometheus_client's multiprocess mode: ``switch serve`` creates a directory per run, exports it as
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, and removes it at exit; ``/metrics`` on any
worker then answers the sum over every worker (see :func:`exposition`). One process alone uses
the ordinary in-memory registry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator

import iso4217
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# End-to-end and provider latency, 1 ms to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_ISO_CODES = frozenset(currency.code for currency in iso4217.Currency)
_PID_FILE = re.compile(r"_(\d+)\.db$")


def currency_label(code: str) -> str:
    """Return ``code`` when it is an ISO 4217 code, else ``"other"``: a label must stay bounded."""
    return code if code in _ISO_CODES else "other"


def multiprocess_dir() -> str | None:
    """The multiprocess directory of this run, or None when this process keeps its own values."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The switch's collectors, in their own registry so several apps (tests) can coexist."""

    def __init__(self) -> None:
        """Create the collectors."""
        self.registry = CollectorRegistry(auto_describe=True)
        if multiprocess_dir() is None:
            # In multiprocess mode the exposition reads every worker's /proc entry instead.
            ProcessCollector(registry=self.registry)
        registry = self.registry

        # ---------------------------------------------------------------- authorizations
        self.payments = Counter(
            "switch_payments_total",
            "Payments created, by final status of the authorization and provider account."
            " Incremented in switch/payments/service.py when the authorization's outcome is written.",
            ["status", "provider"],
            registry=registry,
        )
        self.authorizations = Counter(
            "switch_authorizations_total",
            "Authorizations answered (replays excluded), by provider account, payment method, ISO 4217"
            " currency (else 'other') and payment status. Incremented by observe_authorization, called"
            " from the instrumented payment service (switch/api/metrics.py).",
            ["account", "method", "currency", "status"],
            registry=registry,
        )
        self.authorization_duration = Histogram(
            "switch_authorization_duration_seconds",
            "End-to-end authorization time inside the switch (idempotency, risk, routing, provider calls,"
            " ledger commit). Observed by observe_authorization.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.provider_calls = Histogram(
            "switch_provider_call_seconds",
            "Provider call latency by account, flow and outcome. Observed in switch/payments/service.py.",
            ["provider", "flow", "outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.provider_call_duration = Histogram(
            "switch_provider_call_duration_seconds",
            "Provider call latency, 1 ms to 10 s buckets, by account and operation (authorize, capture,"
            " void, refund, sync). Observed by the payment service around each adapter call.",
            ["account", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.unknown_outcomes = Counter(
            "switch_unknown_outcomes_total",
            "Provider calls whose outcome stayed unknown after replay and look-up, by account and flow."
            " Incremented in switch/payments/service.py.",
            ["provider", "flow"],
            registry=registry,
        )

        # ---------------------------------------------------------------- routing
        self.routing_attempts = Counter(
            "switch_routing_attempts_total",
            "Provider attempts of authorizations, by account, payment method and attempt outcome"
            " (approved, declined_soft, declined_hard, technical, pending, requires_action, unknown)."
            " Incremented by the routing/cascade code for each attempt.",
            ["account", "method", "outcome"],
            registry=registry,
        )
        self.cascades = Counter(
            "switch_cascades_total",
            "Failovers from one account to the next, by reason (technical, soft decline code class)."
            " Incremented by the cascade policy when it moves to the next account.",
            ["from_account", "to_account", "reason"],
            registry=registry,
        )
        self.circuit_breaker_state = Gauge(
            "switch_circuit_breaker_state",
            "Circuit breaker per account: 0 closed, 1 half-open, 2 open. Set by the routing code on each"
            " state change; across workers the worst state wins.",
            ["account"],
            multiprocess_mode="max",
            registry=registry,
        )

        # ---------------------------------------------------------------- risk
        self.risk_decisions = Counter(
            "switch_risk_decisions_total",
            "Risk decisions (approve, review, decline, request_3ds). Incremented by the risk engine per authorization.",
            ["decision"],
            registry=registry,
        )
        self.risk_rules_fired = Counter(
            "switch_risk_rules_fired_total",
            "Risk rules that fired, by rule kind (velocity, amount, geo_mismatch, country, ...), action and"
            " mode (enforce, shadow). Incremented by the risk engine; rule names are merchant text and"
            " never a label.",
            ["rule_kind", "action", "mode"],
            registry=registry,
        )
        self.risk_counter_unavailable = Counter(
            # Not "..._counter_unavailable_total": promtool refuses a metric name with its type in it.
            "switch_risk_velocity_unavailable_total",
            "Velocity look-ups that could not reach the counter store (the rule was skipped)."
            " Incremented by the risk engine.",
            registry=registry,
        )
        self.sanctions_screenings = Counter(
            "switch_sanctions_screenings_total",
            "Sanctions screenings by result (clear, hit, review, error). Incremented by the screening code.",
            ["result"],
            registry=registry,
        )

        # ---------------------------------------------------------------- idempotency
        self.idempotent_replays = Counter(
            "switch_idempotent_replays_total",
            "Requests answered from a stored response under their Idempotency-Key. Incremented by the"
            " instrumented payment service (switch/api/metrics.py).",
            registry=registry,
        )
        self.idempotency_conflicts = Counter(
            "switch_idempotency_conflicts_total",
            "Idempotency-Key refusals, by kind (in_use: a concurrent request holds the key;"
            " body_mismatch: the key was used with another body). Incremented by the instrumented"
            " payment service (switch/api/metrics.py).",
            ["kind"],
            registry=registry,
        )

        # ---------------------------------------------------------------- webhooks
        self.webhooks = Counter(
            "switch_webhooks_total",
            "Inbound provider notifications by account and result (applied, duplicate, no_change, unmatched)."
            " Incremented in switch/payments/notifications.py.",
            ["provider", "result"],
            registry=registry,
        )
        self.webhooks_rejected = Counter(
            "switch_webhooks_rejected_total",
            "Inbound provider notifications rejected (forged, stale, malformed), by account and reason."
            " Incremented in switch/payments/notifications.py.",
            ["provider", "reason"],
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "switch_webhook_deliveries_total",
            "Outbound merchant event deliveries by result (delivered, failed, gave_up). Incremented by the"
            " webhook delivery worker.",
            ["result"],
            registry=registry,
        )
        self.webhook_delivery_lag = Histogram(
            "switch_webhook_delivery_lag_seconds",
            "Time from an event's creation to its successful delivery. Observed by the delivery worker.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
            registry=registry,
        )

        # ---------------------------------------------------------------- ledger
        self.ledger_batch_size = Histogram(
            "switch_ledger_batch_ops",
            "Operations committed per group-commit batch. Observed by record_batch (writer.on_batch).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
            registry=registry,
        )
        self.ledger_batch_seconds = Histogram(
            "switch_ledger_batch_seconds",
            "Time to write and commit one group-commit batch. Observed by record_batch (writer.on_batch).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=registry,
        )
        self.ledger_batches_failed = Counter(
            "switch_ledger_batches_failed_total",
            "Group-commit batches that failed (every request in them got 503). Incremented by writer.on_failure.",
            registry=registry,
        )
        self.ledger_queue_depth = Gauge(
            "switch_ledger_queue_depth",
            "Write ops waiting for the next group commit, sampled after each batch; summed over workers.",
            multiprocess_mode="livesum",
            registry=registry,
        )

        # ---------------------------------------------------------------- recovery
        self.recovery_passes = Counter(
            "switch_recovery_passes_total",
            "Recovery passes over open intents. Incremented in switch/payments/recovery.py.",
            registry=registry,
        )
        self.recovery_errors = Counter(
            "switch_recovery_errors_total",
            "Intents whose settlement raised during a recovery pass (logged; the pass went on)."
            " Incremented in switch/payments/recovery.py.",
            registry=registry,
        )
        # Every worker computes these from the database; the most recent reading wins.
        self.unresolved_intents = Gauge(
            "switch_unresolved_intents",
            "Authorization attempts and capture/void/refund operations whose outcome is not settled yet."
            " Set by recovery's refresh_gauges.",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.stuck_intents = Gauge(
            "switch_stuck_intents",
            "Unresolved intents recovery gave up on by itself: listed by `switch recovery list` for an operator."
            " Set by recovery's refresh_gauges.",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.oldest_unresolved_seconds = Gauge(
            "switch_oldest_unresolved_intent_age_seconds",
            "Age of the oldest unresolved intent (0 when there is none). Set by recovery's refresh_gauges.",
            multiprocess_mode="mostrecent",
            registry=registry,
        )

    def record_batch(self, ops: int, seconds: float) -> None:
        """Observe one committed ledger batch."""
        self.ledger_batch_size.observe(ops)
        self.ledger_batch_seconds.observe(seconds)

    def observe_authorization(self, account: str, method: str, currency: str, status: str, seconds: float) -> None:
        """Count one answered authorization and observe its end-to-end duration.

        Args:
            account: Provider account that decided it (``"none"`` when no provider was called).
            method: Payment method type (``card``, ``wallet``, ...).
            currency: The payment's currency; anything not ISO 4217 is counted as ``"other"``.
            status: The payment's status in the answer.
            seconds: Time spent inside the switch.
        """
        self.authorizations.labels(account, method, currency_label(currency), status).inc()
        self.authorization_duration.observe(seconds)

    def close(self) -> None:
        """Drop this worker's live gauges from the multiprocess directory as the worker exits."""
        if multiprocess_dir() is not None:
            mark_process_dead(os.getpid())


class _WorkerProcesses(Collector):
    """Process metrics summed over the live workers of a multiprocess run (CPU, memory, fds)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def _pids(self) -> list[int]:
        pids: set[int] = set()
        for name in os.listdir(self._path):
            match = _PID_FILE.search(name)
            if match:
                pids.add(int(match.group(1)))
        return sorted(pid for pid in pids if os.path.exists(f"/proc/{pid}"))

    def collect(self) -> Iterator[Metric]:
        """Sum each live worker's ``/proc`` figures."""
        totals: dict[str, float] = {}
        starts: list[float] = []
        for pid in self._pids():
            for family in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                for sample in family.samples:
                    if sample.name == "process_start_time_seconds":
                        starts.append(sample.value)
                    else:
                        totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        yield from _process_families(totals, starts)


def _process_families(totals: dict[str, float], starts: Iterable[float]) -> Iterator[Metric]:
    cpu = CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time of the workers in seconds.")
    cpu.add_metric([], totals.get("process_cpu_seconds_total", 0.0))
    yield cpu
    for name, help_text in (
        ("process_resident_memory_bytes", "Resident memory of the workers in bytes."),
        ("process_virtual_memory_bytes", "Virtual memory of the workers in bytes."),
        ("process_open_fds", "Open file descriptors of the workers."),
    ):
        yield GaugeMetricFamily(name, help_text, value=totals.get(name, 0.0))
    first = min(starts, default=0.0)
    yield GaugeMetricFamily("process_start_time_seconds", "Start time of the oldest worker.", value=first)


def exposition(metrics: Metrics) -> CollectorRegistry:
    """Return the registry ``/metrics`` renders: this process's, or the merge over all workers."""
    path = multiprocess_dir()
    if path is None:
        return metrics.registry
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    registry.register(_WorkerProcesses(path))
    return registry
