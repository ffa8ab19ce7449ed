"""Backtesting: replay a merchant's past payments against a proposed rule document.

Payments are replayed in time order. The velocity a rule would have seen is recomputed from the
history itself with ``fastpath.velocity.VelocityCounters`` on a clock set to each payment's time
(every historic payment counts, whatever the proposed rules decide, as every attempt counts live;
a payment's ``declined`` outcome counts towards ``declines`` of the payments after it). Sanctions
matches are the ones recorded with each payment, or those of an injected ``screen``. SCA is not
replayed: ``request_3ds`` counts the payments that rules would have sent to 3DS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import msgspec

from fastpath.velocity import VelocityCounters
from switch.risk.engine import evaluate
from switch.risk.rules import CompiledRules, DisabledDefault, RiskRules, effective_rules
from switch.risk.types import PERS, WINDOW_SECONDS, WINDOWS, RiskFacts, SanctionsMatch, VelocityReading, WindowCounts

MAX_FLAGGED = 1_000
_WINDOW_SPANS = tuple(WINDOW_SECONDS[window] for window in WINDOWS)


class HistoricPayment(msgspec.Struct, frozen=True, kw_only=True):
    """One past payment: its facts as they were and what happened to it afterwards."""

    id: str
    facts: RiskFacts
    declined: bool = False
    refunded: bool = False
    disputed: bool = False
    sanctions: tuple[SanctionsMatch, ...] = ()


class FlaggedPayment(msgspec.Struct, frozen=True, kw_only=True):
    """A payment the proposed rules would have stopped or questioned, that later went bad."""

    payment: str
    decision: str
    refunded: bool
    disputed: bool


class BacktestReport(msgspec.Struct, kw_only=True):
    """What the proposed rules would have done over the period.

    ``by_rule`` counts the payments each rule fired on (shadow rules included, they are what a
    backtest is for); ``flagged`` lists (up to ``MAX_FLAGGED``) the payments not approved that
    were later refunded or disputed.
    """

    payments: int = 0
    declined: int = 0
    reviewed: int = 0
    request_3ds: int = 0
    approved: int = 0
    declined_later_refunded: int = 0
    declined_later_disputed: int = 0
    reviewed_later_refunded: int = 0
    reviewed_later_disputed: int = 0
    request_3ds_later_refunded: int = 0
    request_3ds_later_disputed: int = 0
    approved_later_refunded: int = 0
    approved_later_disputed: int = 0
    by_rule: dict[str, int] = msgspec.field(default_factory=dict)
    flagged: list[FlaggedPayment] = msgspec.field(default_factory=list)


# The report's field prefix for each decision.
_COUNTER_OF: dict[str, str] = {
    "decline": "declined",
    "review": "reviewed",
    "request_3ds": "request_3ds",
    "approve": "approved",
}


def _key_values(facts: RiskFacts) -> list[tuple[str, str]]:
    values = {
        "card": facts.card_fingerprint,
        "email": facts.email,
        "ip": facts.ip,
        "device": facts.device_id,
        "customer": facts.customer_id,
    }
    return [(per, value) for per in PERS if (value := values[per])]


class _Replay:
    """Counters rebuilt from the history, on a clock the replay sets."""

    def __init__(self) -> None:
        self.now = 0.0
        clock = self._clock
        self.attempts = VelocityCounters(windows=_WINDOW_SPANS, clock=clock, max_keys=1_000_000)
        self.declines = VelocityCounters(windows=_WINDOW_SPANS, clock=clock, max_keys=1_000_000, distinct_cap=0)

    def _clock(self) -> float:
        return self.now

    def reading(self, payment: HistoricPayment) -> VelocityReading:
        facts = payment.facts
        self.now = max(self.now, facts.occurred_at)
        pairs = _key_values(facts)
        keys = [f"{per}:{value}" for per, value in pairs]
        distinct = [None if per == "card" else facts.card_fingerprint for per, _ in pairs]
        attempts = self.attempts.add_many(keys, facts.amount, distinct)
        # Declines before this payment: its own outcome is not known when it is decided.
        declines = self.declines.check_many(keys)
        counts: dict[tuple[str, str], WindowCounts] = {}
        for index, (per, _) in enumerate(pairs):
            for window_index, window in enumerate(WINDOWS):
                count, amount, cards = attempts[index][window_index]
                counts[(per, window)] = WindowCounts(
                    count=count,
                    amount=amount,
                    distinct_cards=cards if per != "card" else 1,
                    declines=declines[index][window_index][0],
                )
        if payment.declined:
            self.declines.add_many(keys, 0)
        return VelocityReading(counts=counts)


def backtest(
    document: RiskRules | None,
    history: Iterable[HistoricPayment],
    *,
    with_defaults: bool = True,
    screen: Callable[[RiskFacts], Sequence[SanctionsMatch]] | None = None,
) -> BacktestReport:
    """Replay ``history`` against ``document`` and count what it would have decided.

    Args:
        document: The proposed merchant document (None: the platform defaults alone).
        history: The merchant's payments of the period, in any order.
        with_defaults: Evaluate the document over the platform defaults, as it would run live.
        screen: Screens a payment's names; by default each payment's recorded matches are used.

    Returns:
        The counts, per decision, per later refund or dispute, and per rule.
    """
    if with_defaults:
        rules = effective_rules(document)
    else:
        own = document.rules if document is not None else []
        rules = CompiledRules(rules=tuple(rule for rule in own if not isinstance(rule, DisabledDefault)))
    replay = _Replay()
    report = BacktestReport()
    by_rule = report.by_rule
    for payment in sorted(history, key=lambda item: item.facts.occurred_at):
        reading = replay.reading(payment)
        matches = screen(payment.facts) if screen is not None else payment.sanctions
        decision = evaluate(rules, payment.facts, reading, matches, None)
        report.payments += 1
        for fired in decision.rules:
            by_rule[fired.name] = by_rule.get(fired.name, 0) + 1
        outcome = decision.decision
        counter = _COUNTER_OF[outcome]
        setattr(report, counter, getattr(report, counter) + 1)
        if payment.refunded:
            name = f"{counter}_later_refunded"
            setattr(report, name, getattr(report, name) + 1)
        if payment.disputed:
            name = f"{counter}_later_disputed"
            setattr(report, name, getattr(report, name) + 1)
        if outcome != "approve" and (payment.refunded or payment.disputed) and len(report.flagged) < MAX_FLAGGED:
            report.flagged.append(
                FlaggedPayment(
                    payment=payment.id, decision=outcome, refunded=payment.refunded, disputed=payment.disputed
                )
            )
    return report


__all__ = ["MAX_FLAGGED", "BacktestReport", "FlaggedPayment", "HistoricPayment", "backtest"]
