"""The attempt plan for one payment and the cascade policy between its attempts."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import msgspec

from adapters.base import Outcome, ProviderResult


class AttemptPlan(msgspec.Struct, frozen=True):
    """Providers to try in order, with the strategy and the reason for the order."""

    providers: tuple[str, ...]
    strategy: str
    reason: str


class NoRoute(LookupError):
    """No configured provider can take the payment."""


def priority_plan(configured: Sequence[str], available: Collection[str]) -> AttemptPlan:
    """Plan the merchant's providers in their configured order, skipping unknown ones.

    Raises:
        NoRoute: When none of the configured providers is available.
    """
    providers = tuple(name for name in configured if name in available)
    if not providers:
        raise NoRoute("none of the merchant's providers is available")
    return AttemptPlan(providers, "priority", "merchant's configured provider order")


def may_cascade(result: ProviderResult) -> bool:
    """Return whether trying the next provider is safe after ``result``.

    Only technical failures the issuer never saw cascade. Hard and soft declines would fail the
    same way elsewhere (and retries cost fees); an unknown outcome may have authorized, so it is
    resolved with a status call instead of risking a double charge.
    """
    return result.outcome is Outcome.TECHNICAL


DECLINE_CATEGORY = {
    Outcome.DECLINED_HARD: "hard",
    Outcome.DECLINED_SOFT: "soft",
    Outcome.TECHNICAL: "technical",
}
