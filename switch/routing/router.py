"""One routing decision per payment: the merchant's config version, its rule, the ranked plan.

The merchant's documents live in :class:`~switch.stores.documents.VersionedDocuments` (cached in
each worker, refreshed by pub/sub); this module picks the version that applies to a payment (the
canary for the shoppers whose sticky bucket falls in its percentage), matches the payment against
its rules and ranks the matched candidates. A merchant without a config gets version 0: priority
over its provider accounts, which is what every payment did before routing configs existed.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec

from adapters.base import Outcome
from switch.routing.document import (
    CompiledRouting,
    PaymentFacts,
    Reliable,
    RoutingDocument,
    implied_default,
    parse_document,
    rollout_bucket,
)
from switch.routing.fees import AccountRouting
from switch.routing.plan import CascadePolicy
from switch.routing.stats import BreakerState, StatsView
from switch.routing.strategies import DEFAULT_RELIABLE, CandidateView, Ranker
from switch.stores.documents import Head, VersionedDocuments

logger = logging.getLogger(__name__)


#: The circuit-breaker gauge's value per state (0 closed, 1 half-open, 2 open).
BREAKER_GAUGE: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}


class RoutingConfig:
    """One stored version, compiled once per worker."""

    __slots__ = ("cascade", "compiled", "document", "version")

    def __init__(self, version: int, document: RoutingDocument) -> None:
        """Compile ``document`` (version 0: the implied default)."""
        self.version = version
        self.document = document
        self.compiled = CompiledRouting(document)
        self.cascade = document.cascade.policy()


def _mentioned_accounts(body: Mapping[str, Any]) -> set[str]:
    """Every account a stored document names: they were valid when it was stored.

    An account removed from the providers file since then stays in the document; the ranker shows
    it as not eligible instead of the whole document failing to load.
    """
    names: set[str] = set()
    targets = [body.get("default") or {}, *(body.get("rules") or [])]
    for target in targets:
        if isinstance(target, Mapping):
            names.update(str(name) for name in target.get("candidates") or ())
    return names


def compile_stored(version: int, body: dict[str, Any]) -> RoutingConfig:
    """Compile a stored version (for :class:`VersionedDocuments`)."""
    return RoutingConfig(version, parse_document(body, _mentioned_accounts(body)))


class AccountsView(Mapping[str, AccountRouting]):
    """The routing view of every account an adapter exists for.

    Accounts from the providers file carry their fee schedules; an adapter registered without one
    (the sandbox, or one added at run time) is an account with no fees rather than an unknown one.
    """

    def __init__(self, configured: Mapping[str, AccountRouting], adapters: Mapping[str, object]) -> None:
        """View ``adapters`` through the parsed ``configured`` accounts."""
        self._configured = configured
        self._adapters = adapters
        self._plain: dict[str, AccountRouting] = {}

    def __getitem__(self, name: str) -> AccountRouting:
        found = self._configured.get(name)
        if found is not None:
            return found
        if name not in self._adapters:
            raise KeyError(name)
        plain = self._plain.get(name)
        if plain is None:
            plain = self._plain[name] = AccountRouting(name=name, provider=name)
        return plain

    def __contains__(self, name: object) -> bool:
        return name in self._configured or name in self._adapters

    def __iter__(self) -> Iterator[str]:
        return iter(set(self._configured) | set(self._adapters))

    def __len__(self) -> int:
        return len(set(self._configured) | set(self._adapters))


class RoutingDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The attempt plan of one payment and how it was reached."""

    plan: tuple[str, ...]
    strategy: str
    rule: str | None
    version: int
    reason: str
    candidates: list[CandidateView]
    cascade: CascadePolicy
    reliable: Reliable = Reliable()
    canary: bool = False


class Router:
    """Decides routes for every merchant of this worker."""

    def __init__(
        self,
        documents: VersionedDocuments[RoutingConfig],
        accounts: Mapping[str, AccountRouting],
        stats: StatsView,
        supports: Callable[[str, str], bool],
        *,
        ranker: Ranker | None = None,
        rng: random.Random | None = None,
        static: bool = False,
        on_breaker: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        """Wire the router.

        Args:
            documents: The merchants' routing configs.
            accounts: Routing view (fees, settlement, region) of every provider account.
            stats: Success rates, latencies and breakers (memory or Redis).
            supports: ``supports(account, method)``: whether the account's adapter takes the method.
            ranker: Holds fee tables and weighted rotation state; one per worker.
            rng: Exploration draws; seeded in tests.
            static: Ignore stored configs and statistics: every merchant's accounts in priority
                order (``SWITCH_ROUTING=static``, for side-by-side benchmarks).
        """
        self.static = static
        self._on_breaker = on_breaker
        self.documents = documents
        self.accounts = accounts
        self.stats = stats
        self._supports = supports
        self._ranker = ranker or Ranker()
        self._rng = rng or random.Random()
        self._implied: OrderedDict[tuple[str, ...], RoutingConfig] = OrderedDict()

    def implied(self, merchant_accounts: tuple[str, ...]) -> RoutingConfig:
        """The version-0 config of a merchant without a document."""
        config = self._implied.get(merchant_accounts)
        if config is None:
            config = RoutingConfig(0, implied_default(merchant_accounts))
            self._implied[merchant_accounts] = config
            if len(self._implied) > 1024:
                self._implied.popitem(last=False)
        return config

    def choose(
        self, head: Head[RoutingConfig], merchant_accounts: tuple[str, ...], sticky: Mapping[str, str | None]
    ) -> tuple[RoutingConfig, bool]:
        """Return the config that applies to this shopper, and whether it is the canary.

        A shopper without the canary's sticky key (no customer, or no card) stays on the active
        version, so nobody flips between configs from one payment to the next.
        """
        canary = head.canary
        if canary is not None and head.canary_version is not None:
            key = sticky.get(canary.document.rollout.sticky)
            if key and rollout_bucket(key, head.canary_version) < head.canary_percent:
                return canary, True
        if head.active is None:
            return self.implied(merchant_accounts), False
        return head.active, False

    async def decide(
        self,
        merchant_id: str,
        merchant_accounts: tuple[str, ...],
        facts: PaymentFacts,
        sticky: Mapping[str, str | None],
        *,
        dry_run: bool = False,
    ) -> RoutingDecision:
        """Route one payment.

        Args:
            merchant_id: Whose config applies.
            merchant_accounts: The merchant's provider accounts in priority order (for version 0).
            facts: What routing knows about the payment.
            sticky: Canary stickiness keys: ``{"customer": ..., "card": ...}``.
            dry_run: Explain without side effects (``POST /v1/routing/simulate``).

        Returns:
            The decision; its ``plan`` is empty when no candidate can take the payment.
        """
        if self.static:
            config, canary = self.implied(merchant_accounts), False
        else:
            head = await self.documents.head(merchant_id)
            config, canary = self.choose(head, merchant_accounts, sticky)
        match = config.compiled.match(facts)
        ranking = self._ranker.rank(
            match.target,
            facts,
            self.accounts,
            self.stats,
            self._rng,
            self._supports,
            settings=config.document.reliable,
            dry_run=dry_run,
        )
        rule = f"rule {match.rule!r}" if match.rule is not None else "the default"
        reason = f"{ranking.reason} ({rule} of config version {config.version})"
        return RoutingDecision(
            plan=ranking.plan[: config.cascade.max_attempts],
            strategy=ranking.strategy,
            rule=match.rule,
            version=config.version,
            reason=reason,
            candidates=ranking.candidates,
            cascade=config.cascade,
            reliable=config.document.reliable,
            canary=canary,
        )

    async def record(
        self,
        account: str,
        method: str,
        currency: str,
        outcome: Outcome,
        latency_ms: float,
        settings: Reliable = DEFAULT_RELIABLE,
    ) -> None:
        """Feed one finished attempt into the routing statistics; never fails the payment.

        ``settings`` (the config's ``reliable`` section) decides the breaker state reported to
        ``on_breaker`` (the circuit-breaker gauge).
        """
        if self.static:
            return
        try:
            await self.stats.record(account, method, currency, outcome, latency_ms)  # type: ignore[attr-defined]
        except Exception as exc:
            logger.warning("routing stats not recorded (%s)", type(exc).__name__)
            return
        if self._on_breaker is not None:
            self._on_breaker(
                account, self.stats.breaker(account, settings.breaker_failures, settings.breaker_cooldown_s)
            )
