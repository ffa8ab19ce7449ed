"""Step 4 of the authorization path: velocity, rules, sanctions, AML and SCA, into one decision.

Every payment is counted (declined ones included, before any provider is called) and gets its
``risk`` object, whatever the decision. The rules in force are the merchant's document over the
platform defaults, from the versioned document store every worker caches. When the counters
cannot be reached, the configured policy applies: ``open`` decides without the velocity rules
(and counts that in a metric), ``closed`` declines the payment as ``risk_blocked``; neither is an
error for the merchant.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Literal

import asyncpg
import msgspec
from redis.asyncio import Redis

from switch.config import Settings
from switch.metrics import Metrics
from switch.payments.facts import PaymentProfile, Profiler
from switch.payments.methods import MethodDetails
from switch.payments.model import PaymentCreate
from switch.risk.aml import AmlMonitor, AmlState, MemoryAmlState, RedisAmlState
from switch.risk.engine import FiredRule, RiskDecision, ScaSummary, evaluate
from switch.risk.rules import CompiledRules, effective_rules, parse_rules
from switch.risk.sanctions import SanctionsScreener
from switch.risk.sca import MemoryScaState, RedisScaState, ScaDecision, ScaPolicy, ScaState
from switch.risk.types import RiskFacts, SanctionsMatch, VelocityReading
from switch.risk.velocity import (
    CountersUnavailable,
    LocalVelocity,
    RedisVelocity,
    VelocityCounter,
    VelocityEvent,
)
from switch.stores.documents import VersionedDocuments

logger = logging.getLogger(__name__)

CounterPolicy = Literal["open", "closed"]


def compile_risk_document(version: int, body: dict[str, Any]) -> CompiledRules:
    """Compile a stored risk rules version (for :class:`VersionedDocuments`)."""
    return effective_rules(parse_rules(body))


class Assessment(msgspec.Struct, kw_only=True):
    """Risk's verdict on one payment, with what the later steps need to finish its bookkeeping."""

    decision: RiskDecision
    facts: RiskFacts
    sca: ScaDecision | None

    @property
    def shown(self) -> dict[str, Any]:
        """The payment's ``risk`` object."""
        return msgspec.to_builtins(self.decision)  # type: ignore[no-any-return]


_DISABLED = RiskDecision(decision="approve", score=0, rules=[], sca=ScaSummary(exemption=None, reason="risk_disabled"))

_COUNTERS_DOWN = FiredRule(
    name="platform.counters_unavailable",
    action="decline",
    value="unavailable",
    threshold="available",
)


class RiskCheck:
    """Decides the risk of payments for every merchant of this worker."""

    def __init__(
        self,
        *,
        documents: VersionedDocuments[CompiledRules] | None = None,
        velocity: VelocityCounter | None = None,
        screener: SanctionsScreener | None = None,
        sca: ScaPolicy | None = None,
        aml: AmlMonitor | None = None,
        counter_policy: CounterPolicy = "open",
        metrics: Metrics | None = None,
        enabled: bool = True,
    ) -> None:
        """Wire the checks (each defaults to its in-process form, for one worker).

        ``enabled=False`` (``SWITCH_RISK=off``) approves every payment without counting or
        screening it, for side-by-side benchmarks; the payment's ``risk`` says so.
        """
        self.enabled = enabled
        self.documents = documents
        self.velocity = velocity or LocalVelocity()
        self.screener = screener or SanctionsScreener()
        self.sca = sca or ScaPolicy(MemoryScaState())
        self.aml = aml or AmlMonitor(MemoryAmlState())
        self._counter_policy = counter_policy
        self._metrics = metrics or Metrics()
        self._defaults = effective_rules(None)

    async def rules_for(self, merchant_id: str) -> CompiledRules:
        """The rules in force for a merchant (platform defaults when it stored none)."""
        if self.documents is None:
            return self._defaults
        head = await self.documents.head(merchant_id)
        return head.active if head.active is not None else self._defaults

    async def assess(
        self,
        merchant_id: str,
        payment_id: str,
        request: PaymentCreate,
        method: MethodDetails,
        profile: PaymentProfile,
    ) -> Assessment:
        """Count the payment and decide it: approve, review, request_3ds or decline."""
        facts = risk_facts(merchant_id, request, method, profile)
        if not self.enabled:
            return Assessment(decision=_DISABLED, facts=facts, sca=None)
        rules = await self.rules_for(merchant_id)
        velocity, counters_down = await self._observe(facts)
        names = [name for name in facts.names if name]
        matches: list[SanctionsMatch] = self.screener.screen_names(names) if names else []
        self._metrics.sanctions_screenings.labels("hit" if matches else "clear").inc()
        sca = await self.sca.decide(facts) if facts.payment_method == "card" else None
        extra = await self.aml.check(facts, payment_id)
        if counters_down:
            extra = [*extra, _COUNTERS_DOWN]
        decision = evaluate(rules, facts, velocity, matches, sca, extra)
        self._metrics.risk_decisions.labels(decision.decision).inc()
        for fired in decision.rules:
            self._metrics.risk_rules_fired.labels(_kind_of(fired.name), fired.action, fired.mode).inc()
        return Assessment(decision=decision, facts=facts, sca=sca)

    async def _observe(self, facts: RiskFacts) -> tuple[VelocityReading, bool]:
        event = VelocityEvent(
            merchant_id=facts.merchant_id,
            amount=facts.amount,
            card=facts.card_fingerprint,
            email=facts.email,
            ip=facts.ip,
            device=facts.device_id,
            customer=facts.customer_id,
            occurred_at=facts.occurred_at,
        )
        try:
            reading = await self.velocity.observe(event)
        except CountersUnavailable:
            # The closed policy: without counters a card-testing run could not be seen.
            self._metrics.risk_counter_unavailable.inc()
            return VelocityReading(available=False), True
        if not reading.available:
            self._metrics.risk_counter_unavailable.inc()
        return reading, False

    async def declined_at_provider(self, assessment: Assessment) -> None:
        """Count a provider decline (cascaded attempts included) against the card and its keys."""
        if not self.enabled:
            return
        facts = assessment.facts
        await self.velocity.record_decline(
            facts.merchant_id,
            facts.card_fingerprint,
            time.time(),
            email=facts.email,
            ip=facts.ip,
            device=facts.device_id,
            customer=facts.customer_id,
        )

    async def authorized_without_sca(self, assessment: Assessment) -> None:
        """An exempted payment went through: it counts toward the low-value limits."""
        if assessment.sca is not None and assessment.sca.exemption is not None:
            await self.sca.record(assessment.facts, assessment.sca)

    async def sca_completed(self, card_fingerprint: str | None) -> None:
        """The cardholder authenticated: the low-value counters start again."""
        if card_fingerprint:
            await self.sca.sca_completed(card_fingerprint)


def _kind_of(rule_name: str) -> str:
    """A bounded label for a fired rule: its family (``platform``, ``aml``...) or ``merchant``."""
    family, dot, _ = rule_name.partition(".")
    return family if dot and family in ("platform", "aml") else "merchant"


def risk_facts(merchant_id: str, request: PaymentCreate, method: MethodDetails, profile: PaymentProfile) -> RiskFacts:
    """What risk may look at for one payment: never the card number."""
    customer = request.customer
    names: list[str] = []
    if method.holder_name:
        names.append(method.holder_name)
    if customer is not None and customer.name and customer.name not in names:
        names.append(customer.name)
    return RiskFacts(
        merchant_id=merchant_id,
        amount=request.amount,
        currency=request.currency,
        payment_method=method.method_type,
        card_fingerprint=profile.card_fingerprint,
        bin=profile.bin,
        email=customer.email.lower() if customer is not None and customer.email else None,
        ip=customer.ip if customer is not None else None,
        ip_country=profile.ip_country,
        device_id=customer.device_id if customer is not None else None,
        customer_id=customer.id if customer is not None else None,
        customer_country=customer.country if customer is not None else None,
        names=tuple(names),
        occurred_at=time.time(),
    )


def build_risk_check(
    settings: Settings, documents: VersionedDocuments[CompiledRules], redis: Redis | None, metrics: Metrics
) -> RiskCheck:
    """The risk checks of one worker: on Redis when it is configured (shared by every worker)."""
    velocity: VelocityCounter
    if redis is not None:
        velocity = RedisVelocity(
            redis,
            policy=settings.risk_counter_policy,  # type: ignore[arg-type]
            deadline_s=settings.risk_counter_deadline_ms / 1000,
        )
        sca_state: ScaState = RedisScaState(redis)
        aml_state: AmlState = RedisAmlState(redis)
    else:
        velocity = LocalVelocity()
        sca_state = MemoryScaState()
        aml_state = MemoryAmlState()
    screener = (
        SanctionsScreener(threshold=float(settings.sanctions_threshold))
        if settings.sanctions_threshold
        else SanctionsScreener()
    )
    return RiskCheck(
        documents=documents,
        velocity=velocity,
        screener=screener,
        sca=ScaPolicy(
            sca_state,
            acquirer_region=settings.sca_acquirer_region,  # type: ignore[arg-type]
            fraud_rate_centibps=settings.sca_fraud_rate_centibps or None,
        ),
        aml=AmlMonitor(aml_state),
        counter_policy=settings.risk_counter_policy,  # type: ignore[arg-type]
        metrics=metrics,
        enabled=settings.risk == "on",
    )


async def refresh_reference_data(
    pool: asyncpg.Pool, profiler: Profiler, risk: RiskCheck, interval_s: float = 1.0
) -> None:
    """Pick up BIN tables and sanctions lists loaded by ``switch bins|sanctions load``, forever.

    Both keep a generation number in the database, so a pass that finds nothing new reads one row
    each; a failed pass is logged (at most once a minute) and tried again, never ending the task.
    """
    last_logged = 0.0
    while True:
        try:
            await profiler.bins.refresh(pool)
            await risk.screener.refresh(pool)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            now = time.monotonic()
            if now - last_logged > 60:
                last_logged = now
                logger.warning("reference data refresh failed (%s); retrying", type(exc).__name__)
        await asyncio.sleep(interval_s)
