"""Providers added beside the three card acquirers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.simulator.server import ProviderSim, Simulator


def providers(sim: Simulator) -> list[ProviderSim]:
    """Instantiate the additional simulated providers."""
    from adapters.simulator.providers.lianlian import LianLianSim
    from adapters.simulator.providers.midtrans import MidtransSim
    from adapters.simulator.providers.pingpong import PingPongSim
    from adapters.simulator.providers.sepa import SepaSim
    from adapters.simulator.providers.xendit import XenditSim

    return [MidtransSim(sim), XenditSim(sim), SepaSim(sim), PingPongSim(sim), LianLianSim(sim)]
