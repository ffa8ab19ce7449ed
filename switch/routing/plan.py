"""The attempt plan for one payment and the cascade policy between its attempts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from adapters.base import Outcome, ProviderAdapter, ProviderResult


class AttemptPlan(msgspec.Struct, frozen=True):
    """Providers to try in order, with the strategy and the reason for the order."""

    providers: tuple[str, ...]
    strategy: str
    reason: str


class NoRoute(LookupError):
    """No configured provider can take the payment."""


def supports_method(adapter: ProviderAdapter, method_type: str) -> bool:
    """Return whether ``adapter`` can take payments of ``method_type`` (cards when it declares nothing)."""
    return method_type in getattr(adapter, "method_types", frozenset({"card"}))


def priority_plan(
    configured: Sequence[str], available: Mapping[str, ProviderAdapter], method_type: str = "card"
) -> AttemptPlan:
    """Plan the merchant's provider accounts in their configured order.

    Accounts that are not configured on this switch, or whose provider cannot take
    ``method_type``, are skipped.

    Raises:
        NoRoute: When no configured account can take the payment.
    """
    providers = tuple(
        name for name in configured if name in available and supports_method(available[name], method_type)
    )
    if not providers:
        raise NoRoute(f"none of the merchant's providers accepts {method_type} payments")
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
