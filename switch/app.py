"""``create_app(settings)``: the Litestar application with its resources on ``app.state``.

The lifespan opens, in order: the database (migrated), the read pool, the group-commit writer,
the store, the merchant directory, the provider adapters and the payment service; and closes
them in reverse, letting the writer commit what is queued before its connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from adapters.base import ProviderAdapter
from switch import __version__
from switch.api.errors import (
    ApiError,
    handle_api_error,
    handle_http_exception,
    handle_payment_error,
    handle_unexpected,
)
from switch.api.health import live, ready
from switch.api.metrics import metrics as metrics_endpoint
from switch.api.openapi import components_for
from switch.api.payments import DOCUMENTED_SCHEMAS, PaymentController
from switch.api.webhooks import receive_webhook
from switch.config import Settings, check_serving, load_settings
from switch.embedded import embedded_database_url
from switch.errors import PaymentError
from switch.ledger.migrate import migrate
from switch.ledger.writer import GroupCommitWriter
from switch.merchants import MerchantDirectory
from switch.metrics import Metrics
from switch.payments.idempotency import IdempotencyGuard
from switch.payments.locks import KeyedLocks
from switch.payments.notifications import NotificationService
from switch.payments.recovery import AttemptRecovery, stop_task
from switch.payments.retention import purge_forever
from switch.payments.service import PaymentService
from switch.providers import build_adapters, load_accounts
from switch.stores.base import Store
from switch.stores.memory import MemoryStore
from switch.stores.redis import RedisStore
from switch.vault.cards import Vault

logger = logging.getLogger(__name__)


async def load_fingerprint_key(connection: asyncpg.Connection, configured: str) -> bytes:
    """Return the card-fingerprint key: the configured one, or one generated once per database."""
    if configured:
        return configured.encode("utf-8")
    await connection.execute(
        "INSERT INTO switch_secrets (name, value) VALUES ('fingerprint_key', $1) ON CONFLICT DO NOTHING",
        secrets.token_bytes(32),
    )
    return bytes(await connection.fetchval("SELECT value FROM switch_secrets WHERE name = 'fingerprint_key'"))


def build_provider_adapters(settings: Settings) -> dict[str, ProviderAdapter]:
    """Instantiate the sandbox and every account of the providers file.

    Raises:
        ConfigError: When the providers file is unusable.
    """
    accounts = load_accounts(settings.providers_file) if settings.providers_file else {}
    return build_adapters(accounts, sandbox_latency_ms=settings.sandbox_latency_ms)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the application; resources are opened by its lifespan.

    Args:
        settings: Configuration; read from the environment when None.
    """
    settings = settings or load_settings()
    check_serving(settings)
    adapters = build_provider_adapters(settings)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        dsn = settings.database_url or embedded_database_url(settings.data_dir)
        connection = await asyncpg.connect(dsn)
        try:
            await migrate(connection)
            fingerprint_key = await load_fingerprint_key(connection, settings.vault_key)
        finally:
            await connection.close()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=settings.db_pool_size)
        writer = GroupCommitWriter(lambda: asyncpg.connect(dsn))
        writer.on_batch = metrics.record_batch
        writer.on_failure = metrics.ledger_batches_failed.inc
        await writer.start()
        store: Store = RedisStore(settings.redis_url) if settings.redis_url else MemoryStore(max_keys=200_000)
        locks = KeyedLocks()
        app.state.settings = settings
        app.state.metrics = metrics
        app.state.pool = pool
        app.state.writer = writer
        app.state.store = store
        app.state.adapters = adapters
        app.state.merchants = MerchantDirectory(pool)
        idempotency = IdempotencyGuard(store, pool, settings.idempotency_ttl_s)
        app.state.payments = PaymentService(
            pool=pool,
            writer=writer,
            adapters=adapters,
            vault=Vault(fingerprint_key),
            idempotency=idempotency,
            metrics=metrics,
            locks=locks,
        )
        app.state.notifications = NotificationService(
            pool=pool, writer=writer, adapters=adapters, metrics=metrics, locks=locks
        )
        app.state.recovery = AttemptRecovery(
            pool=pool, writer=writer, adapters=adapters, idempotency=idempotency, metrics=metrics
        )
        recovery_task = asyncio.create_task(app.state.recovery.run_forever(), name="attempt-recovery")
        retention_task = asyncio.create_task(
            purge_forever(pool, settings.idempotency_ttl_s), name="idempotency-retention"
        )
        try:
            yield
        finally:
            await stop_task(retention_task)
            await stop_task(recovery_task)
            await writer.stop()
            for adapter in adapters.values():
                await adapter.close()
            await store.close()
            await pool.close()

    app = Litestar(
        route_handlers=[PaymentController, receive_webhook, metrics_endpoint, live, ready],
        lifespan=[lifespan],
        exception_handlers={
            ApiError: handle_api_error,
            PaymentError: handle_payment_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Payment switch API",
            version=__version__,
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
        ),
        debug=False,
    )
    # Litestar generates components only for the types it sees in signatures; add the body Structs
    # the payment handlers decode themselves.
    document = app.openapi_schema
    if document.components.schemas is None:
        document.components.schemas = {}
    document.components.schemas.update(components_for(*DOCUMENTED_SCHEMAS).schemas or {})
    return app


def create_app_from_env() -> Litestar:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the environment."""
    logging.basicConfig(level=os.environ.get("SWITCH_LOG_LEVEL", "INFO"))
    return create_app(load_settings())
