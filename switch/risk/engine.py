"""Evaluation of the rules in force against one payment's facts: the risk decision.

Pure and synchronous: the counters, the sanctions screening and the SCA outcome are measured
beforehand and passed in. Each rule becomes a small check (a closure) once per ``CompiledRules``;
a check answers ``(value, threshold)`` when its rule fires, None otherwise.

Decision: the highest action among the enforced rules that fired, decline > review >
request_3ds > approve (an ``allow`` rule that fires is listed and never raises the decision);
then, if SCA is required and nothing stronger applies, ``request_3ds``. Score: the sum of the
enforced fired rules' scores, capped at 100. Shadow rules are listed with ``mode: "shadow"`` and
change neither. When the velocity reading is unavailable (counter store down, fail-open), velocity
and amount-anomaly rules are not evaluated: they are not listed, and their names are on
``RiskDecision.unevaluated`` instead, so "did not fire" and "could not be measured" stay distinct.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from fastpath import fx
from switch.risk.rules import (
    AmountAnomalyRule,
    AmountRule,
    CompiledRules,
    CountryRule,
    GeoMismatchRule,
    Rule,
    SanctionsRule,
    VelocityRule,
)
from switch.risk.sca import ScaDecision
from switch.risk.types import RiskFacts, SanctionsMatch, VelocityReading

Decision = Literal["approve", "review", "decline", "request_3ds"]
Measured = int | float | str | None
Threshold = int | float | str | list[str] | None

_RANK: dict[str, int] = {"allow": 0, "request_3ds": 1, "review": 2, "decline": 3}
_DECISION_OF_RANK: tuple[Decision, ...] = ("approve", "request_3ds", "review", "decline")
_MAX_SCORE = 100


class FiredRule(msgspec.Struct, frozen=True, kw_only=True):
    """A rule that fired: what it measured and what it compared that against."""

    name: str
    action: str
    value: Measured
    threshold: Threshold
    mode: str = "enforce"


class ScaSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The SCA part of a payment's ``risk``."""

    exemption: str | None
    reason: str


NOT_EVALUATED = ScaSummary(exemption=None, reason="not_evaluated")


class RiskDecision(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """A payment's ``risk`` object exactly as DESIGN 8 (that is all it encodes to).

    Read beside it, not encoded (they are not the merchant's to see): ``decline_code``
    (``risk_blocked``, ``sanctions_hit`` or None), ``sanctions_match`` (the best entry matched by an
    enforced sanctions rule, for the review record), ``sca_required`` (the payment still needs a
    3DS step, also when review or decline outrank request_3ds) and ``unevaluated`` (rules skipped
    because the counters were unavailable).
    """

    decision: Decision
    score: int
    rules: list[FiredRule]
    sca: ScaSummary

    @property
    def decline_code(self) -> str | None:
        """``risk_blocked`` or ``sanctions_hit`` when the decision is decline, else None."""
        return self.__dict__.get("_decline_code")

    @property
    def sanctions_match(self) -> SanctionsMatch | None:
        """The list entry behind an enforced sanctions rule that fired, for the review record."""
        return self.__dict__.get("_sanctions_match")

    @property
    def sca_required(self) -> bool:
        """Whether SCA (3DS) is required for this payment."""
        return bool(self.__dict__.get("_sca_required", False))

    @property
    def unevaluated(self) -> tuple[str, ...]:
        """Rules that could not be evaluated (velocity unavailable)."""
        return self.__dict__.get("_unevaluated", ())


Check = Callable[[RiskFacts, VelocityReading, Sequence[SanctionsMatch]], "tuple[Measured, Threshold] | None"]


class _Plan(msgspec.Struct, frozen=True):
    """One rule ready to run."""

    name: str
    action: str
    rank: int
    score: int
    shadow: bool
    needs_velocity: bool
    sanctions: bool
    check: Check


def _velocity_check(rule: VelocityRule) -> Check:
    key = (rule.per, rule.window)
    measure = rule.measure
    threshold = rule.threshold

    def check(facts: RiskFacts, velocity: VelocityReading, sanctions: Sequence[SanctionsMatch]) -> tuple | None:
        counts = velocity.counts.get(key)
        if counts is None:
            return None
        value = getattr(counts, measure)
        return (value, threshold) if value > threshold else None

    return check


def _amount_check(rule: AmountRule) -> Check:
    threshold = rule.threshold
    target = rule.currency

    def check(facts: RiskFacts, velocity: VelocityReading, sanctions: Sequence[SanctionsMatch]) -> tuple | None:
        amount = facts.amount
        if target is not None and facts.currency != target:
            try:
                amount = fx.convert(amount, facts.currency, target).amount_out
            except (KeyError, ValueError):
                # No rate for this pair: the threshold cannot be compared, so the rule is silent.
                return None
        return (amount, threshold) if amount > threshold else None

    return check


def _anomaly_check(rule: AmountAnomalyRule) -> Check:
    key = (rule.per, rule.window)
    factor = rule.factor
    min_history = rule.min_history

    def check(facts: RiskFacts, velocity: VelocityReading, sanctions: Sequence[SanctionsMatch]) -> tuple | None:
        counts = velocity.counts.get(key)
        if counts is None:
            return None
        # The reading includes the payment being decided; the history is what came before it.
        earlier = counts.count - 1
        earlier_sum = counts.amount - facts.amount
        if earlier < min_history or earlier_sum <= 0:
            return None
        # amount > factor * (earlier_sum / earlier), in integers.
        if facts.amount * earlier > factor * earlier_sum:
            return (facts.amount, factor * earlier_sum // earlier)
        return None

    return check


def _geo_check(rule: GeoMismatchRule) -> Check:
    def check(facts: RiskFacts, velocity: VelocityReading, sanctions: Sequence[SanctionsMatch]) -> tuple | None:
        card_country = facts.bin.country if facts.bin is not None else None
        ip_country = facts.ip_country
        if card_country and ip_country and card_country != ip_country:
            return (ip_country, card_country)
        return None

    return check


def _country_check(rule: CountryRule) -> Check:
    countries = frozenset(rule.countries)
    listed = sorted(countries)
    sources = tuple(rule.match_on)

    def check(facts: RiskFacts, velocity: VelocityReading, sanctions: Sequence[SanctionsMatch]) -> tuple | None:
        for source in sources:
            if source == "card":
                country = facts.bin.country if facts.bin is not None else None
            elif source == "ip":
                country = facts.ip_country
            else:
                country = facts.customer_country
            if country in countries:
                return (country, listed)
        return None

    return check


def _sanctions_check(rule: SanctionsRule) -> Check:
    minimum = rule.min_score

    def check(facts: RiskFacts, velocity: VelocityReading, sanctions: Sequence[SanctionsMatch]) -> tuple | None:
        best = None
        for match in sanctions:
            if (minimum is None or match.score >= minimum) and (best is None or match.score > best):
                best = match.score
        return None if best is None else (best, minimum)

    return check


_BUILDERS: dict[type, Callable[..., Check]] = {
    VelocityRule: _velocity_check,
    AmountRule: _amount_check,
    AmountAnomalyRule: _anomaly_check,
    GeoMismatchRule: _geo_check,
    CountryRule: _country_check,
    SanctionsRule: _sanctions_check,
}


def _plan(rule: Rule) -> _Plan:
    return _Plan(
        rule.name,
        rule.action,
        _RANK[rule.action],
        rule.score,
        rule.mode == "shadow",
        isinstance(rule, VelocityRule | AmountAnomalyRule),
        isinstance(rule, SanctionsRule),
        _BUILDERS[type(rule)](rule),
    )


def _plans(rules: CompiledRules) -> tuple[_Plan, ...]:
    plans = rules.__dict__.get("_plans")
    if plans is None:
        plans = tuple(_plan(rule) for rule in rules.rules)
        msgspec.structs.force_setattr(rules, "_plans", plans)
    return plans


def _best_match(sanctions: Sequence[SanctionsMatch], minimum: float | None) -> SanctionsMatch | None:
    eligible = [match for match in sanctions if minimum is None or match.score >= minimum]
    return max(eligible, key=lambda match: match.score) if eligible else None


def evaluate(
    rules: CompiledRules,
    facts: RiskFacts,
    velocity: VelocityReading,
    sanctions: Sequence[SanctionsMatch] = (),
    sca: ScaDecision | None = None,
    extra: Sequence[FiredRule] = (),
) -> RiskDecision:
    """Decide one payment.

    Args:
        rules: The merchant's rules in force (``rules.effective_rules``), reused across payments.
        facts: What is known about the payment.
        velocity: The counters, this payment included.
        sanctions: Screening matches for the payment's names (already above the screener's threshold).
        sca: The SCA outcome, or None when it was not evaluated (non-card payments).
        extra: Rules fired elsewhere (AML flags), listed and acted on like the others.

    Returns:
        The decision with every rule that fired.
    """
    fired: list[FiredRule] = []
    unevaluated: list[str] = []
    rank = 0
    score = 0
    declined_by_sanctions = False
    match: SanctionsMatch | None = None
    available = velocity.available
    for plan in _plans(rules):
        if plan.needs_velocity and not available:
            unevaluated.append(plan.name)
            continue
        result = plan.check(facts, velocity, sanctions)
        if result is None:
            continue
        if plan.shadow:
            fired.append(
                FiredRule(name=plan.name, action=plan.action, value=result[0], threshold=result[1], mode="shadow")
            )
            continue
        fired.append(FiredRule(name=plan.name, action=plan.action, value=result[0], threshold=result[1]))
        score += plan.score
        if plan.rank > rank:
            rank = plan.rank
        if plan.sanctions:
            if plan.rank == 3:
                declined_by_sanctions = True
            if match is None:
                threshold = result[1]
                match = _best_match(sanctions, threshold if isinstance(threshold, float | int) else None)
    for rule in extra:
        fired.append(rule)
        if rule.mode != "shadow":
            rank = max(rank, _RANK.get(rule.action, 0))
    sca_required = sca is not None and sca.required
    if sca_required and rank == 0:
        rank = 1
    decision = RiskDecision(
        decision=_DECISION_OF_RANK[rank],
        score=min(score, _MAX_SCORE),
        rules=fired,
        sca=NOT_EVALUATED if sca is None else ScaSummary(exemption=sca.exemption, reason=sca.reason),
    )
    state = decision.__dict__
    if rank == 3:
        state["_decline_code"] = "sanctions_hit" if declined_by_sanctions else "risk_blocked"
    if match is not None:
        state["_sanctions_match"] = match
    if sca_required:
        state["_sca_required"] = True
    if unevaluated:
        state["_unevaluated"] = tuple(unevaluated)
    return decision


def encode_decision(decision: RiskDecision) -> bytes:
    """The payment's ``risk`` object as JSON."""
    return msgspec.json.encode(decision)


__all__ = [
    "NOT_EVALUATED",
    "FiredRule",
    "RiskDecision",
    "ScaSummary",
    "encode_decision",
    "evaluate",
]
