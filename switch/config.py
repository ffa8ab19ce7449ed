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
