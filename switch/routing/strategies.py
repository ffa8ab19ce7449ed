"""Ranking a rule's candidates into an attempt plan: cheapest, reliable, weighted, priority.

Every strategy first drops the ineligible candidates, each with its reason: an account this switch
does not have, one whose provider does not take the payment method, an open circuit (half-open
lets one probe through), and, for ``reliable``, a mean latency above the cut-off. If that leaves
nothing but candidates excluded by their circuit or latency, those are tried anyway, in order:
a payment is better attempted on a doubtful provider than refused outright.

* ``priority``: the configured order (what a merchant without a config gets).
* ``cheapest``: expected value ``p * (amount - fee - fx_cost)`` in integers (``p`` in parts per
  million), highest first; ties by lower fee, then configured order. Candidates without fee data
  come last. Fees come from ``fastpath.fees`` tables built once per combination (see
  :class:`switch.routing.fees.FeeBook`).
* ``reliable``: the success probability, highest first; ties by lower mean latency, then order.
  With probability ``exploration_percent`` a random other eligible candidate goes first, so a
  provider that lost its traffic is measured again.
* ``weighted``: smooth weighted round-robin over the eligible candidates: deterministic, and over
  any run of ``sum(weights)`` decisions each candidate is first within one of its weight. State is
  per compiled target (one per rule of one version) and per worker.

The success probability is smoothed with an optimistic prior, as Hyperswitch seeds new keys with
successes: ``p = (successes + min_samples) / (attempts + min_samples)``, so an account without
history is tried rather than starved, and real data outweighs the prior as it accumulates.

``dry_run`` (the simulate endpoint) changes nothing: no probe is claimed, no exploration is drawn
and the weighted state does not advance.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable, Mapping

import msgspec

from switch.routing.document import PaymentFacts, Reliable, Target
from switch.routing.fees import AccountRouting, FeeBook
from switch.routing.stats import StatsView

PPM = 1_000_000
# The latency cut-off needs a few attempts: one slow answer must not exclude a provider.
LATENCY_MIN_ATTEMPTS = 5
DEFAULT_RELIABLE = Reliable()


class CandidateView(msgspec.Struct, frozen=True):
    """One candidate as the simulate endpoint and the payment's routing show it."""

    account: str
    eligible: bool
    reason: str
    fee: int | None = None
    fx_cost: int | None = None
    success_rate: float | None = None
    score: int | None = None


class Ranking(msgspec.Struct, frozen=True, kw_only=True):
    """The attempt plan with its strategy, the reason for the order, and every candidate."""

    plan: tuple[str, ...]
    strategy: str
    reason: str
    candidates: list[CandidateView]


def success_ppm(rate: float, attempts: int, min_samples: int) -> int:
    """Return the smoothed success probability in parts per million (see the module docstring)."""
    denominator = attempts + min_samples
    if denominator == 0:
        return PPM
    return (round(rate * attempts) + min_samples) * PPM // denominator


class _Candidate(msgspec.Struct):
    """Working state of one candidate during a ranking."""

    index: int
    account: str
    eligible: bool = True
    fallback: bool = False
    reason: str = ""
    fee: int | None = None
    fx_cost: int | None = None
    p: int | None = None
    score: int | None = None

    def view(self) -> CandidateView:
        p = self.p
        return CandidateView(
            self.account, self.eligible, self.reason, self.fee, self.fx_cost, None if p is None else p / PPM, self.score
        )


class Ranker:
    """Ranks candidates; holds the fee tables and the weighted round-robin state."""

    def __init__(self, fee_book: FeeBook | None = None) -> None:
        """Create a ranker.

        Args:
            fee_book: Where fee tables are cached (one per ranker by default).
        """
        self.fees = fee_book or FeeBook()
        self._rotation: weakref.WeakKeyDictionary[Target, list[int]] = weakref.WeakKeyDictionary()

    def rank(
        self,
        target: Target,
        facts: PaymentFacts,
        accounts: Mapping[str, AccountRouting],
        stats: StatsView,
        rng: random.Random,
        supports: Callable[[str, str], bool],
        *,
        settings: Reliable = DEFAULT_RELIABLE,
        dry_run: bool = False,
    ) -> Ranking:
        """Rank ``target``'s candidates for one payment.

        Args:
            target: The matched rule's (or the default's) compiled target.
            facts: The payment.
            accounts: Routing view of every account this switch has.
            stats: Success rates, latencies and breakers.
            rng: Source of exploration draws (seeded in tests).
            supports: ``supports(account, method)``: can the account take the method.
            settings: The document's ``reliable`` section (window, prior, breaker, exploration).
            dry_run: Explain without side effects (simulate).

        Returns:
            The plan (empty when no candidate can take the payment) and every candidate's view.
        """
        method = facts.payment_method
        strategy = target.strategy
        candidates = [_Candidate(index, account) for index, account in enumerate(target.candidates)]
        self._filter(candidates, target.strategy, facts, accounts, stats, supports, settings, dry_run)
        eligible = [candidate for candidate in candidates if candidate.eligible]
        if not eligible:
            eligible = [candidate for candidate in candidates if candidate.fallback]
            for candidate in eligible:
                candidate.eligible = True
                candidate.reason += "; tried anyway: no candidate is available"
        if strategy == "cheapest":
            self._stats(eligible, method, facts.currency, stats, settings)
            order, reason = self._cheapest(eligible, target, facts, accounts)
        elif strategy == "reliable":
            self._stats(eligible, method, facts.currency, stats, settings)
            order, reason = self._reliable(eligible, rng, settings, dry_run)
        elif strategy == "weighted":
            order, reason = self._weighted(eligible, target, dry_run)
        else:
            order, reason = eligible, "configured order"
        if not order:
            reason = "no candidate can take this payment"
        return Ranking(
            plan=tuple(candidate.account for candidate in order),
            strategy=strategy,
            reason=reason,
            candidates=[candidate.view() for candidate in candidates],
        )

    @staticmethod
    def _filter(
        candidates: list[_Candidate],
        strategy: str,
        facts: PaymentFacts,
        accounts: Mapping[str, AccountRouting],
        stats: StatsView,
        supports: Callable[[str, str], bool],
        settings: Reliable,
        dry_run: bool,
    ) -> None:
        method = facts.payment_method
        failures, cooldown = settings.breaker_failures, settings.breaker_cooldown_s
        for candidate in candidates:
            account = candidate.account
            if account not in accounts:
                candidate.eligible, candidate.reason = False, "account not configured on this switch"
                continue
            if not supports(account, method):
                candidate.eligible, candidate.reason = False, f"does not take {method} payments"
                continue
            state = stats.breaker(account, failures, cooldown)
            if state == "open":
                candidate.eligible, candidate.fallback, candidate.reason = False, True, "circuit open"
                continue
            if state == "half_open":
                if dry_run or stats.allow_probe(account, failures, cooldown):
                    candidate.reason = "probe: circuit half-open after its cool-down"
                else:
                    candidate.eligible, candidate.fallback = False, True
                    candidate.reason = "circuit half-open: a probe is in flight"
                    continue
            if strategy == "reliable":
                _, attempts = stats.success_rate(account, method, facts.currency, settings.window_s)
                latency = stats.mean_latency_ms(account, method, facts.currency, settings.window_s)
                if attempts >= LATENCY_MIN_ATTEMPTS and latency is not None and latency > settings.latency_cutoff_ms:
                    candidate.eligible, candidate.fallback = False, True
                    candidate.reason = (
                        f"mean latency {round(latency)} ms above the {settings.latency_cutoff_ms} ms cut-off"
                    )
                    continue
            if not candidate.reason:
                candidate.reason = "eligible"

    @staticmethod
    def _stats(eligible: list[_Candidate], method: str, currency: str, stats: StatsView, settings: Reliable) -> None:
        window, prior = settings.window_s, settings.min_samples
        for candidate in eligible:
            rate, attempts = stats.success_rate(candidate.account, method, currency, window)
            # success_ppm, inlined: this runs for every candidate of every payment.
            denominator = attempts + prior
            candidate.p = (round(rate * attempts) + prior) * PPM // denominator if denominator else PPM

    def _cheapest(
        self,
        eligible: list[_Candidate],
        target: Target,
        facts: PaymentFacts,
        accounts: Mapping[str, AccountRouting],
    ) -> tuple[list[_Candidate], str]:
        if not eligible:
            return [], ""
        names = tuple(candidate.account for candidate in eligible)
        amount = facts.amount
        fees, fx_costs, notes = self.fees.price(
            names, accounts, amount, facts.currency, facts.payment_method, facts.card_country
        )
        for position, candidate in enumerate(eligible):
            fee, fx_cost = fees[position], fx_costs[position]
            candidate.fee, candidate.fx_cost = fee, fx_cost
            if fee is None or fx_cost is None:
                candidate.reason = notes[position]
                continue
            candidate.score = (candidate.p or 0) * (amount - fee - fx_cost) // PPM
        priced = sorted(
            (candidate for candidate in eligible if candidate.score is not None),
            key=lambda c: (-(c.score or 0), c.fee, c.index),
        )
        order = priced + [candidate for candidate in eligible if candidate.score is None]
        first = order[0]
        if first.score is None:
            return order, "no candidate has fee data: configured order"
        # Short on purpose: the candidates list carries every fee, FX cost and score.
        reason = f"cheapest by expected value: {first.account} nets {first.score}"
        if len(priced) > 1:
            reason = f"{reason}; runner-up {priced[1].account} nets {priced[1].score}"
        return order, reason

    @staticmethod
    def _reliable(
        eligible: list[_Candidate], rng: random.Random, settings: Reliable, dry_run: bool
    ) -> tuple[list[_Candidate], str]:
        if not eligible:
            return [], ""
        for candidate in eligible:
            candidate.score = candidate.p
        order = sorted(eligible, key=lambda c: (-(c.p or 0), c.index))
        reason = f"most reliable: {order[0].account} at {(order[0].p or 0) / PPM:.1%}"
        if (
            not dry_run
            and len(order) > 1
            and settings.exploration_percent
            and rng.randrange(100) < settings.exploration_percent
        ):
            explored = order.pop(rng.randrange(1, len(order)))
            order.insert(0, explored)
            reason = f"exploration ({settings.exploration_percent}% of traffic): {explored.account} first; " + reason
        return order, reason

    def _weighted(self, eligible: list[_Candidate], target: Target, dry_run: bool) -> tuple[list[_Candidate], str]:
        if not eligible:
            return [], ""
        weights = target.weights or tuple(1 for _ in target.candidates)
        current = self._rotation.get(target)
        if current is None:
            current = [0] * len(weights)
            if not dry_run:
                self._rotation[target] = current
        if dry_run:
            current = list(current)
        total = 0
        chosen = eligible[0]
        for candidate in eligible:
            weight = weights[candidate.index]
            candidate.score = weight
            total += weight
            current[candidate.index] += weight
            if current[candidate.index] > current[chosen.index]:
                chosen = candidate
        current[chosen.index] -= total
        rest = sorted((c for c in eligible if c is not chosen), key=lambda c: (-(c.score or 0), c.index))
        reason = f"weighted split: {chosen.account} (weight {weights[chosen.index]} of {total})"
        return [chosen, *rest], reason


_default_ranker = Ranker()


def rank(
    target: Target,
    facts: PaymentFacts,
    accounts: Mapping[str, AccountRouting],
    stats: StatsView,
    rng: random.Random,
    supports: Callable[[str, str], bool],
    *,
    settings: Reliable = DEFAULT_RELIABLE,
    dry_run: bool = False,
) -> Ranking:
    """Rank with the process-wide :class:`Ranker`; see :meth:`Ranker.rank`."""
    return _default_ranker.rank(target, facts, accounts, stats, rng, supports, settings=settings, dry_run=dry_run)
