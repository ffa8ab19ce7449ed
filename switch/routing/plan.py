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


class CascadePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When a payment may move on to the next provider of its plan."""

    max_attempts: int = 2
    soft_decline_codes: frozenset[str] = frozenset()
    deadline_ms: int = 20_000


DEFAULT_CASCADE = CascadePolicy()


def cascade_reason(result: ProviderResult, policy: CascadePolicy = DEFAULT_CASCADE) -> str | None:
    """Return why trying the next provider is safe after ``result``, or None when it is not.

    A technical failure moved no money, so the next provider may always be tried. A soft decline
    is retried elsewhere only for the codes the merchant's config lists (acquirer-side refusals
    the issuer never saw: elsewhere the same card would simply fail again, and each retry costs a
    fee). An unknown outcome may have authorized: it is resolved by replay and look-up, never
    cascaded. Hard declines would fail everywhere.
    """
    if result.outcome is Outcome.TECHNICAL:
        return "technical"
    if result.outcome is Outcome.DECLINED_SOFT and result.code in policy.soft_decline_codes:
        return "soft_decline"
    return None


def may_cascade(result: ProviderResult, policy: CascadePolicy = DEFAULT_CASCADE) -> bool:
    """Return whether trying the next provider is safe after ``result``; see ``cascade_reason``."""
    return cascade_reason(result, policy) is not None


DECLINE_CATEGORY = {
    Outcome.DECLINED_HARD: "hard",
    Outcome.DECLINED_SOFT: "soft",
    Outcome.TECHNICAL: "technical",
}
