"""PSD2 strong customer authentication: in scope or not, exemptions, and state since the last SCA.

A card payment is in scope when the card was issued in the EEA (``facts.bin.country``) and the
acquirer is in the EEA (``ScaPolicy(acquirer_region=...)``); one-leg-out payments are best effort
and left out of scope. In scope, in this order (RTS 2018/389, reference 3.1):

1. Low value (Art. 16): amount <= EUR 30, and with it the payments exempted since the last SCA
   stay <= EUR 100 in total and <= 5 in number.
2. Transaction risk analysis (Art. 18): amount <= the band that the configured fraud rate allows
   (<= 0.13 %: EUR 100, <= 0.06 %: EUR 250, <= 0.01 %: EUR 500).
3. Otherwise SCA is required: the payment is answered ``requires_action`` with a 3DS ``next_action``.

Amounts in other currencies are converted to euro cents with ``fastpath.fx``. The state "since the
last SCA" lives per card fingerprint in a ``ScaState`` (memory or Redis, expiring): ``decide`` only
reads it; call ``record`` once the payment went through with an exemption, ``sca_completed`` after
a successful 3DS authentication.
"""

from __future__ import annotations

import abc
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import msgspec
import redis.asyncio as aioredis

from fastpath import fx
from switch.risk.types import RiskFacts

# EU member states, Iceland, Liechtenstein and Norway; the French outermost regions and Aland
# have ISO codes of their own but are EU territory, and BIN tables do use those codes.
EEA_COUNTRIES: frozenset[str] = frozenset(
    {
        *("AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE"),
        *("IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"),
        *("IS", "LI", "NO"),
        *("GF", "GP", "MQ", "RE", "YT", "MF", "AX"),
    }
)

LOW_VALUE_MAX_EUR = 3_000
LOW_VALUE_CUMULATIVE_EUR = 10_000
LOW_VALUE_MAX_COUNT = 5
# (fraud rate ceiling in centi-basis-points, largest amount in euro cents); 0.13 % = 1300.
TRA_BANDS: tuple[tuple[int, int], ...] = ((100, 50_000), (600, 25_000), (1_300, 10_000))
DEFAULT_STATE_TTL_S = 30 * 86_400

Exemption = Literal["low_value", "transaction_risk_analysis"]


class ScaDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The SCA outcome for one payment.

    Attributes:
        exemption: ``low_value``, ``transaction_risk_analysis`` or None.
        reason: Why: ``out_of_scope``, ``card_country_unknown``, ``low_value``,
            ``transaction_risk_analysis``, ``low_value_limit_reached``, ``above_exemption_limits``,
            ``no_eur_rate``.
        required: Whether a 3DS authentication is needed.
        amount_eur: The amount in euro cents (0 when out of scope), for ``record``.
    """

    exemption: Exemption | None
    reason: str
    required: bool
    amount_eur: int = 0


OUT_OF_SCOPE = ScaDecision(exemption=None, reason="out_of_scope", required=False)


class ScaState(abc.ABC):
    """Payments exempted since the last SCA, per card fingerprint, expiring."""

    @abc.abstractmethod
    async def count_and_sum(self, card: str) -> tuple[int, int]:
        """Return how many payments were exempted since the last SCA and their sum in euro cents."""

    @abc.abstractmethod
    async def add(self, card: str, amount_eur: int) -> None:
        """Count one exempted payment of ``amount_eur`` euro cents."""

    @abc.abstractmethod
    async def reset(self, card: str) -> None:
        """Forget the card's counters: an SCA was completed."""


class MemoryScaState(ScaState):
    """One process's state: bounded (least recently touched card first out), lazily expired."""

    def __init__(
        self,
        ttl_s: float = DEFAULT_STATE_TTL_S,
        max_cards: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an empty state.

        Args:
            ttl_s: A card's counters are forgotten this long after its last exempted payment.
            max_cards: Upper bound on cards held.
            clock: Seconds; injectable for tests.
        """
        self._ttl_s = ttl_s
        self._max_cards = max_cards
        self._clock = clock
        self._cards: OrderedDict[str, tuple[float, int, int]] = OrderedDict()

    async def count_and_sum(self, card: str) -> tuple[int, int]:
        """See ``ScaState.count_and_sum``."""
        item = self._cards.get(card)
        if item is None:
            return 0, 0
        if item[0] <= self._clock():
            del self._cards[card]
            return 0, 0
        return item[1], item[2]

    async def add(self, card: str, amount_eur: int) -> None:
        """See ``ScaState.add``."""
        count, total = await self.count_and_sum(card)
        self._cards[card] = (self._clock() + self._ttl_s, count + 1, total + amount_eur)
        self._cards.move_to_end(card)
        while len(self._cards) > self._max_cards:
            self._cards.popitem(last=False)

    async def reset(self, card: str) -> None:
        """See ``ScaState.reset``."""
        self._cards.pop(card, None)


class RedisScaState(ScaState):
    """State shared by every worker: one hash per card (``count``, ``sum``) with an expiry."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "switch:sca:", ttl_s: float = DEFAULT_STATE_TTL_S
    ) -> None:
        """Use ``client``; keys are ``prefix + card fingerprint``.

        Args:
            client: A redis.asyncio client (the caller owns and closes it).
            prefix: Key namespace.
            ttl_s: Expiry, renewed with every exempted payment.
        """
        self._client = client
        self._prefix = prefix
        self._ttl_ms = max(1, int(ttl_s * 1000))

    async def count_and_sum(self, card: str) -> tuple[int, int]:
        """HMGET count sum."""
        count, total = await self._client.hmget(self._prefix + card, ["count", "sum"])
        return int(count or 0), int(total or 0)

    async def add(self, card: str, amount_eur: int) -> None:
        """HINCRBY both fields and renew the expiry, in one MULTI round trip."""
        key = self._prefix + card
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "count", 1)
            pipe.hincrby(key, "sum", amount_eur)
            pipe.pexpire(key, self._ttl_ms)
            await pipe.execute()

    async def reset(self, card: str) -> None:
        """DEL."""
        await self._client.delete(self._prefix + card)


def tra_limit_eur(fraud_rate_centibps: int | None) -> int:
    """The largest amount (euro cents) that transaction risk analysis may exempt at this fraud rate.

    Args:
        fraud_rate_centibps: The PSP's overall fraud rate for remote card payments in hundredths of
            a basis point (0.05 % = 500), or None when TRA is not used.

    Returns:
        0 when no band applies.
    """
    if fraud_rate_centibps is None:
        return 0
    for ceiling, limit in TRA_BANDS:
        if fraud_rate_centibps <= ceiling:
            return limit
    return 0


def to_eur_cents(amount: int, currency: str) -> int | None:
    """``amount`` minor units of ``currency`` in euro cents (half-even), None without a rate."""
    if currency == "EUR":
        return amount
    try:
        return fx.convert(amount, currency, "EUR").amount_out
    except (KeyError, ValueError):
        return None


class ScaPolicy:
    """Decides SCA for card payments of one acquirer region and fraud rate."""

    def __init__(
        self,
        state: ScaState,
        *,
        acquirer_region: Literal["eea", "other"] = "eea",
        fraud_rate_centibps: int | None = None,
        low_value: bool = True,
    ) -> None:
        """Configure the policy.

        Args:
            state: Where exempted payments since the last SCA are counted.
            acquirer_region: Whether the acquirer is in the EEA; outside it nothing is in scope.
            fraud_rate_centibps: The configured fraud rate for TRA (0.13 % = 1300), None: no TRA.
            low_value: Whether to apply the low-value exemption.
        """
        self.state = state
        self.acquirer_in_eea = acquirer_region == "eea"
        self.tra_limit = tra_limit_eur(fraud_rate_centibps)
        self.low_value = low_value

    def in_scope(self, facts: RiskFacts) -> bool:
        """Whether PSD2 SCA applies: a card issued in the EEA, acquired in the EEA."""
        if facts.payment_method != "card" or not self.acquirer_in_eea:
            return False
        country = facts.bin.country if facts.bin is not None else None
        return country in EEA_COUNTRIES

    async def decide(self, facts: RiskFacts) -> ScaDecision:
        """Decide SCA for one payment; reads the state, changes nothing.

        Args:
            facts: The payment (``card_fingerprint`` keys the low-value counters).

        Returns:
            The exemption applied, or that SCA is required, or out of scope.
        """
        if facts.payment_method != "card" or not self.acquirer_in_eea:
            return OUT_OF_SCOPE
        if facts.bin is None or not facts.bin.country:
            return ScaDecision(exemption=None, reason="card_country_unknown", required=False)
        if facts.bin.country not in EEA_COUNTRIES:
            return OUT_OF_SCOPE
        amount_eur = to_eur_cents(facts.amount, facts.currency)
        if amount_eur is None:
            return ScaDecision(exemption=None, reason="no_eur_rate", required=True)
        limit_reached = False
        if self.low_value and amount_eur <= LOW_VALUE_MAX_EUR and facts.card_fingerprint:
            count, total = await self.state.count_and_sum(facts.card_fingerprint)
            if count + 1 <= LOW_VALUE_MAX_COUNT and total + amount_eur <= LOW_VALUE_CUMULATIVE_EUR:
                return ScaDecision(exemption="low_value", reason="low_value", required=False, amount_eur=amount_eur)
            limit_reached = True
        if amount_eur <= self.tra_limit:
            return ScaDecision(
                exemption="transaction_risk_analysis",
                reason="transaction_risk_analysis",
                required=False,
                amount_eur=amount_eur,
            )
        reason = "low_value_limit_reached" if limit_reached else "above_exemption_limits"
        return ScaDecision(exemption=None, reason=reason, required=True, amount_eur=amount_eur)

    async def record(self, facts: RiskFacts, decision: ScaDecision) -> None:
        """Count a payment that went through without SCA under an exemption."""
        if decision.exemption is not None and facts.card_fingerprint:
            await self.state.add(facts.card_fingerprint, decision.amount_eur)

    async def sca_completed(self, card_fingerprint: str) -> None:
        """The cardholder authenticated (3DS succeeded): the low-value counters start again."""
        await self.state.reset(card_fingerprint)


__all__ = [
    "EEA_COUNTRIES",
    "OUT_OF_SCOPE",
    "MemoryScaState",
    "RedisScaState",
    "ScaDecision",
    "ScaPolicy",
    "ScaState",
    "to_eur_cents",
    "tra_limit_eur",
]
