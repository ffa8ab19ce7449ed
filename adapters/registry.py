"""Provider name -> adapter class, imported lazily so a deployment loads only what it uses."""

from __future__ import annotations

import importlib

from adapters.base import Credentials, ProviderAdapter

_ADAPTERS: dict[str, str] = {
    "stripe": "adapters.stripe:StripeAdapter",
    "adyen": "adapters.adyen:AdyenAdapter",
    "paypal": "adapters.paypal:PayPalAdapter",
    "midtrans": "adapters.midtrans:MidtransAdapter",
    "xendit": "adapters.xendit:XenditAdapter",
    "sepa": "adapters.sepa:SepaAdapter",
    "pingpong": "adapters.pingpong:PingPongAdapter",
    "lianlian": "adapters.lianlian:LianLianAdapter",
    "sandbox": "adapters.sandbox:SandboxAdapter",
}


def names() -> list[str]:
    """Return every registered provider name."""
    return sorted(_ADAPTERS)


def adapter_class(name: str) -> type[ProviderAdapter]:
    """Return the adapter class registered as ``name``.

    Raises:
        KeyError: For an unknown provider name, or one whose module is not installed.
    """
    target = _ADAPTERS.get(name)
    if target is None:
        raise KeyError(f"unknown provider {name!r}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls: type[ProviderAdapter] = getattr(module, attr)
    except (ImportError, AttributeError):
        raise KeyError(f"provider {name!r} is not available") from None
    return cls


def create(name: str, credentials: Credentials | None = None) -> ProviderAdapter:
    """Instantiate the adapter registered as ``name`` with ``credentials``."""
    return adapter_class(name)(credentials)
