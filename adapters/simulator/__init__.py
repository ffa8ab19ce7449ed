"""Out-of-process provider simulator speaking each provider's wire format, with fault knobs.

Run it with ``python -m adapters.simulator --port 8420`` (or ``switch simulator --port 8420``), or
in-process with :class:`SimulatorServer`. See docs/providers.md for the knobs.
"""

from adapters.simulator.knobs import (
    Burst,
    Fault,
    Latency,
    Outage,
    ProviderKnobs,
    SimulatorConfig,
    Webhook,
    load_config,
)
from adapters.simulator.server import Simulator, SimulatorServer, build_app, run

__all__ = [
    "Burst",
    "Fault",
    "Latency",
    "Outage",
    "ProviderKnobs",
    "Simulator",
    "SimulatorConfig",
    "SimulatorServer",
    "Webhook",
    "build_app",
    "load_config",
    "run",
]
