"""The simulated providers, one module each."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.simulator.server import ProviderSim, Simulator


def new_id(prefix: str, length: int = 24) -> str:
    """Return a provider-looking random id such as ``pi_3Nf...``."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def now() -> int:
    """Unix seconds."""
    return int(time.time())


def all_providers(sim: Simulator) -> list[ProviderSim]:
    """Instantiate every simulated provider bound to ``sim``."""
    from adapters.simulator.providers import adyen, stripe
    from adapters.simulator.providers import paypal as paypal_sim

    providers: list[ProviderSim] = [stripe.StripeSim(sim), adyen.AdyenSim(sim), paypal_sim.PayPalSim(sim)]
    try:
        from adapters.simulator.providers import extra
    except ImportError:  # pragma: no cover - the other providers are optional while being built
        return providers
    return providers + extra.providers(sim)
