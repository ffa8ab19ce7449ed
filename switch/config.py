"""Settings, read once from ``SWITCH_*`` environment variables.

Every setting has a zero-config default so that ``switch serve`` runs with nothing set: an
embedded PostgreSQL under ``SWITCH_DATA_DIR``, in-memory stores, the sandbox provider.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec


class ConfigError(ValueError):
    """A setting has a value the switch cannot use; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """The switch's configuration.

    Attributes:
        database_url: PostgreSQL DSN; empty means start the embedded server in ``data_dir``.
        data_dir: Where the embedded PostgreSQL and other local state live.
        redis_url: Redis URL; empty means in-memory stores (one worker only).
        host: Address ``switch serve`` binds.
        port: Port ``switch serve`` binds.
        workers: Number of server processes.
        sandbox_latency_ms: Artificial latency of the sandbox provider.
        db_pool_size: Size of the read pool (the ledger writer has its own connection).
        max_body_bytes: Largest request body accepted.
        metrics_token: When set, ``/metrics`` requires ``Authorization: Bearer <token>``.
        vault_key: Secret for card fingerprints (HMAC); generated per data dir when empty.
        providers_file: TOML file of provider accounts and credentials; only the sandbox when empty.
        idempotency_ttl_s: How long a finished idempotent response is replayed.
        log_level: Python logging level name.
        vault_master_key: Master key of the card vault (64 hex digits or base64 of 32 bytes).
        vault_master_key_file: File holding the master key (first line) and previous keys (below).
        vault_previous_master_keys: Comma-separated older master keys, to unwrap until re-wrapped.
        rate_limit_per_s: Requests per second each secret key may make (token bucket refill).
        rate_limit_burst: Bucket size: requests a key may make at once after being idle.
        auth_cache_ttl_s: How long a worker trusts a cached key; bounds how late a revocation lands.
        log_format: ``auto`` (text on a terminal, JSON otherwise), ``text`` or ``json``.
        operator_token: Token of the operations page ``/dashboard``; generated at start when empty.
        db_command_timeout_ms: Deadline of every statement on the read pool and the writer's connection.
        db_connect_timeout_ms: Deadline of opening one database connection.
        ledger_submit_timeout_ms: Longest a request waits for its group commit before answering 503.
        ledger_max_queue: Most new requests queued at the ledger writer; beyond it they are shed (503).
        max_inflight: Most payment mutations (authorize, capture, void, refund) in flight per worker.
        shutdown_timeout_s: On SIGTERM, how long in-flight requests and the ledger queue may drain.
        risk_counter_policy: ``open`` (decide without velocity rules when the counters cannot be
            reached, counted in a metric) or ``closed`` (decline as ``risk_blocked`` then).
        risk_counter_deadline_ms: Longest a velocity read may wait on Redis before the policy applies.
        sca_acquirer_region: ``eea`` (PSD2 SCA applies to EEA cards) or ``other`` (out of scope).
        sca_fraud_rate_centibps: The acquirer's fraud rate for transaction risk analysis
            (hundredths of a basis point: 0.13 % is 1300); 0 disables the TRA exemption.
        risk: ``on``, or ``off`` to approve without risk checks (for side-by-side benchmarks only).
        routing: ``smart`` (merchants' routing configs and statistics) or ``static`` (each
            merchant's accounts in priority order, no config or statistics; benchmarks only).
        sanctions_threshold: Fuzzy score (1-100) from which a screened name counts as a match (0: the
            screener's measured default).
    """

    database_url: str = ""
    data_dir: str = "./.switch"
    redis_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    sandbox_latency_ms: int = 0
    db_pool_size: int = 8
    max_body_bytes: int = 262_144
    metrics_token: str = ""
    vault_key: str = ""
    providers_file: str = ""
    idempotency_ttl_s: int = 86_400
    log_level: str = "INFO"
    vault_master_key: str = ""
    vault_master_key_file: str = ""
    vault_previous_master_keys: str = ""
    rate_limit_per_s: int = 100
    rate_limit_burst: int = 200
    auth_cache_ttl_s: int = 10
    log_format: str = "auto"
    operator_token: str = ""
    db_command_timeout_ms: int = 5_000
    db_connect_timeout_ms: int = 3_000
    ledger_submit_timeout_ms: int = 5_000
    ledger_max_queue: int = 2_048
    max_inflight: int = 64
    shutdown_timeout_s: int = 20
    risk_counter_policy: str = "open"
    risk_counter_deadline_ms: int = 50
    sca_acquirer_region: str = "eea"
    sca_fraud_rate_centibps: int = 1300
    sanctions_threshold: int = 0
    risk: str = "on"
    routing: str = "smart"

    def __repr__(self) -> str:
        """Return a representation with secrets masked."""
        return (
            f"Settings(database_url={'<set>' if self.database_url else '<embedded>'}, "
            f"data_dir={self.data_dir!r}, redis_url={'<set>' if self.redis_url else '<memory>'}, "
            f"host={self.host!r}, port={self.port}, workers={self.workers})"
        )


_INT_FIELDS = {
    "port": (1, 65_535),
    "workers": (1, 256),
    "sandbox_latency_ms": (0, 600_000),
    "db_pool_size": (1, 1_000),
    "max_body_bytes": (1_024, 100 * 1_048_576),
    "idempotency_ttl_s": (60, 30 * 86_400),
    "rate_limit_per_s": (1, 1_000_000),
    "rate_limit_burst": (1, 1_000_000),
    "auth_cache_ttl_s": (1, 3_600),
    "db_command_timeout_ms": (100, 600_000),
    "db_connect_timeout_ms": (100, 600_000),
    "ledger_submit_timeout_ms": (100, 600_000),
    "ledger_max_queue": (1, 1_000_000),
    "max_inflight": (1, 100_000),
    "shutdown_timeout_s": (1, 3_600),
    "risk_counter_deadline_ms": (1, 10_000),
    "sca_fraud_rate_centibps": (0, 1_000_000),
    "sanctions_threshold": (0, 100),
}
_CHOICES = {
    "log_format": ("auto", "text", "json"),
    "risk_counter_policy": ("open", "closed"),
    "sca_acquirer_region": ("eea", "other"),
    "risk": ("on", "off"),
    "routing": ("smart", "static"),
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from the environment, then apply explicit overrides.

    Args:
        environ: The variables to read; ``os.environ`` when None.
        **overrides: Values that win over the environment (from CLI flags); None is ignored.

    Returns:
        The parsed settings.

    Raises:
        ConfigError: When a variable does not parse or is out of range.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in msgspec.structs.fields(Settings):
        raw = env.get("SWITCH_" + field.name.upper())
        if raw is None or raw == "":
            continue
        if field.name in _INT_FIELDS:
            values[field.name] = _parse_int("SWITCH_" + field.name.upper(), raw, *_INT_FIELDS[field.name])
        else:
            values[field.name] = raw
    for name, value in overrides.items():
        if value is None:
            continue
        if name in _INT_FIELDS and isinstance(value, int):
            low, high = _INT_FIELDS[name]
            if not low <= value <= high:
                raise ConfigError(f"--{name.replace('_', '-')} must be between {low} and {high}")
        values[name] = value
    for name, choices in _CHOICES.items():
        if name in values and values[name] not in choices:
            raise ConfigError(f"SWITCH_{name.upper()} must be one of {', '.join(choices)}, got {values[name]!r}")
    return Settings(**values)  # type: ignore[arg-type]


def check_serving(settings: Settings) -> None:
    """Refuse settings that cannot serve correctly.

    Raises:
        ConfigError: With more than one worker but no shared Redis (idempotency would break).
    """
    if settings.workers > 1 and not settings.redis_url:
        raise ConfigError("more than one worker needs SWITCH_REDIS_URL: idempotency locks and counters must be shared")


def _parse_int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value
