"""Prometheus collectors. Labels are low-cardinality names (provider account, status, reason),
never an id, an amount or anything a customer typed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The switch's collectors, in their own registry so several apps (tests) can coexist."""

    def __init__(self) -> None:
        """Create the collectors."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.payments = Counter(
            "switch_payments_total",
            "Payments created, by final status of the authorization and provider account.",
            ["status", "provider"],
            registry=self.registry,
        )
        self.provider_calls = Histogram(
            "switch_provider_call_seconds",
            "Provider call latency by account, flow and outcome.",
            ["provider", "flow", "outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.ledger_batch_size = Histogram(
            "switch_ledger_batch_ops",
            "Operations committed per group-commit batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
            registry=self.registry,
        )
        self.ledger_batch_seconds = Histogram(
            "switch_ledger_batch_seconds",
            "Time to write and commit one group-commit batch.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=self.registry,
        )
        self.ledger_batches_failed = Counter(
            "switch_ledger_batches_failed_total", "Group-commit batches that failed.", registry=self.registry
        )
        self.webhooks = Counter(
            "switch_webhooks_total",
            "Inbound provider notifications by account and result (applied, duplicate, no_change, unmatched).",
            ["provider", "result"],
            registry=self.registry,
        )
        self.webhooks_rejected = Counter(
            "switch_webhooks_rejected_total",
            "Inbound provider notifications rejected (forged, stale, malformed), by account and reason.",
            ["provider", "reason"],
            registry=self.registry,
        )

        self.recovery_passes = Counter(
            "switch_recovery_passes_total", "Recovery passes over open intents.", registry=self.registry
        )
        self.recovery_errors = Counter(
            "switch_recovery_errors_total",
            "Intents whose settlement raised during a recovery pass (logged; the pass went on).",
            registry=self.registry,
        )
        self.unresolved_intents = Gauge(
            "switch_unresolved_intents",
            "Authorization attempts and capture/void/refund operations whose outcome is not settled yet.",
            registry=self.registry,
        )
        self.stuck_intents = Gauge(
            "switch_stuck_intents",
            "Unresolved intents recovery gave up on by itself: listed by `switch recovery list` for an operator.",
            registry=self.registry,
        )
        self.oldest_unresolved_seconds = Gauge(
            "switch_oldest_unresolved_intent_age_seconds",
            "Age of the oldest unresolved intent (0 when there is none).",
            registry=self.registry,
        )
        self.unknown_outcomes = Counter(
            "switch_unknown_outcomes_total",
            "Provider calls whose outcome stayed unknown after replay and look-up, by account and flow.",
            ["provider", "flow"],
            registry=self.registry,
        )

    def record_batch(self, ops: int, seconds: float) -> None:
        """Observe one committed ledger batch."""
        self.ledger_batch_size.observe(ops)
        self.ledger_batch_seconds.observe(seconds)
