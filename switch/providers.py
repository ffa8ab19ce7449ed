"""Provider accounts: which providers this switch can call, with which credentials.

Accounts come from a TOML file (``SWITCH_PROVIDERS_FILE``)::

    [accounts.stripe]                      # the account name merchants route to
    provider = "stripe"                    # adapter: stripe, adyen, paypal, midtrans, xendit, ...
    api_key = "env:STRIPE_SECRET_KEY"      # "env:NAME" reads the secret from the environment
    webhook_secret = "env:STRIPE_WEBHOOK_SECRET"
    base_url = "https://..."               # optional; the simulator's URL in tests and load tests
    account_id = ""                        # merchant account, client id, ...
    timeout_s = 10.0                       # optional: deadline of one call, retries included
    lookup_consistency_s = 3600            # optional: how long a look-up by our id may lag

Routing fields (all optional; parsed and checked by ``switch.routing.fees.build_account_routing``
at start-up, which names the account and field of any error)::

    [accounts.adyen-eu]
    provider = "adyen"
    country = "NL"                         # where it acquires: a card from elsewhere is cross-border
    region = "EEA"                         # ... unless the card's country is in this region
    settlement_currency = "EUR"            # payments in another currency pay fx_markup_bps
    settlement_delay_days = 1              # T+1
    fx_markup_bps = 120                    # markup on converted amounts, basis points
    [[accounts.adyen-eu.fees]]             # fee lines; the most specific one applies
    payment_method = "card"                # optional: any method
    currency = "EUR"                       # optional: any payment currency
    region = "EEA"                         # optional: domestic, EEA or international (card's region)
    percent_bps = "140"                    # basis points (1.40 %), decimal string or int, 2 decimals
    fixed = 11                             # minor units of fixed_currency
    fixed_currency = "EUR"                 # optional: default settlement_currency
    cross_border_bps = "50"                # added for cross-border cards
    fx_bps = "0"                           # added when the payment needs conversion
    min_fee = 0                            # floor (0: none), minor units of fixed_currency
    max_fee = 0                            # cap (0: none)

An account without fee lines costs nothing (the sandbox: no fees, no FX, never cross-border).

The in-process ``sandbox`` account always exists. A merchant's ``providers`` list names accounts in
priority order; inbound notifications arrive at ``POST /webhooks/{account}``.
"""

from __future__ import annotations

import inspect
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

import msgspec

from adapters import registry
from adapters.base import Credentials, ProviderAdapter
from adapters.sandbox import SandboxAdapter
from switch.config import ConfigError

ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
SANDBOX = "sandbox"


class AccountConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One provider account as written in the providers file."""

    provider: str
    api_key: str = ""
    webhook_secret: str = ""
    account_id: str = ""
    base_url: str = ""
    extra: dict[str, str] = msgspec.field(default_factory=dict)
    # Deadline of one provider call including its retries (seconds); the adapter's default if unset.
    timeout_s: float | None = None
    # How long the provider's look-up by our own id may lag behind its writes (Stripe's search up to
    # an hour in incidents): "not found" within it is not proof that nothing happened.
    lookup_consistency_s: float | None = None
    # Routing: carried through as written, parsed by switch.routing.fees (see the module docstring).
    country: str | None = None
    region: str | None = None
    settlement_currency: str | None = None
    settlement_delay_days: int = 0
    fx_markup_bps: int = 0
    fees: list[dict[str, Any]] = msgspec.field(default_factory=list)

    def __repr__(self) -> str:
        """Never show the secrets."""
        return f"AccountConfig(provider={self.provider!r}, account_id={self.account_id!r})"


class ProvidersFile(msgspec.Struct, forbid_unknown_fields=True):
    """The providers file."""

    accounts: dict[str, AccountConfig] = msgspec.field(default_factory=dict)


def _resolve(value: str, where: str, environ: Mapping[str, str]) -> str:
    if not value.startswith("env:"):
        return value
    name = value[4:]
    if name not in environ:
        raise ConfigError(f"{where} refers to environment variable {name}, which is not set")
    return environ[name]


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """A provider account ready to instantiate: provider name, credentials and adapter options."""

    provider: str
    credentials: Credentials
    options: dict[str, float] = msgspec.field(default_factory=dict)
    country: str | None = None
    region: str | None = None
    settlement_currency: str | None = None
    settlement_delay_days: int = 0
    fx_markup_bps: int = 0
    fees: tuple[dict[str, Any], ...] = ()


# Providers-file field -> the adapter constructor's keyword.
_OPTIONS = {"timeout_s": "total_timeout", "lookup_consistency_s": "consistency_window_s"}


def _options(name: str, account: AccountConfig) -> dict[str, float]:
    accepted = inspect.signature(registry.adapter_class(account.provider).__init__).parameters
    options: dict[str, float] = {}
    for field, keyword in _OPTIONS.items():
        value = getattr(account, field)
        if value is None:
            continue
        if value <= 0:
            raise ConfigError(f"account {name!r}: {field} must be a positive number of seconds")
        if keyword not in accepted:
            raise ConfigError(f"account {name!r}: provider {account.provider!r} does not take {field}")
        options[keyword] = float(value)
    return options


def load_accounts(path: str, environ: Mapping[str, str] | None = None) -> dict[str, Account]:
    """Read the providers file into ``{account: (provider, credentials)}``.

    Raises:
        ConfigError: When the file is missing or malformed, names an unknown provider, or refers to
            an unset environment variable. The message names the account and field.
    """
    env = os.environ if environ is None else environ
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read providers file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"providers file {path} is not valid TOML: {exc}") from None
    try:
        parsed = msgspec.convert(raw, ProvidersFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"providers file {path}: {exc}") from None
    accounts: dict[str, tuple[str, Credentials]] = {}
    available = set(registry.names())
    for name, account in parsed.accounts.items():
        if not ACCOUNT_NAME.fullmatch(name) or name == SANDBOX:
            raise ConfigError(f"providers file {path}: account name {name!r} is not allowed")
        if account.provider not in available or account.provider == SANDBOX:
            choices = ", ".join(sorted(available - {SANDBOX}))
            raise ConfigError(f"account {name!r}: unknown provider {account.provider!r} (one of {choices})")
        where = f"account {name!r}"
        credentials = Credentials(
            api_key=_resolve(account.api_key, f"{where} api_key", env),
            webhook_secret=_resolve(account.webhook_secret, f"{where} webhook_secret", env),
            account_id=_resolve(account.account_id, f"{where} account_id", env),
            base_url=account.base_url,
            extra={key: _resolve(value, f"{where} extra.{key}", env) for key, value in account.extra.items()},
        )
        accounts[name] = Account(
            provider=account.provider,
            credentials=credentials,
            options=_options(name, account),
            country=account.country,
            region=account.region,
            settlement_currency=account.settlement_currency,
            settlement_delay_days=account.settlement_delay_days,
            fx_markup_bps=account.fx_markup_bps,
            fees=tuple(account.fees),
        )
    return accounts


def build_adapters(accounts: Mapping[str, Account], *, sandbox_latency_ms: int = 0) -> dict[str, ProviderAdapter]:
    """Instantiate one adapter per account, plus the sandbox."""
    adapters: dict[str, ProviderAdapter] = {SANDBOX: SandboxAdapter(latency_ms=sandbox_latency_ms)}
    for name, account in accounts.items():
        adapters[name] = registry.adapter_class(account.provider)(account.credentials, **account.options)
    return adapters
