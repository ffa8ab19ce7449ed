"""``create_app(settings)``: the Litestar application with its resources on ``app.state``.

The lifespan opens, in order: the database (migrated), the read pool, the group-commit writer,
the store, the merchant directory, the provider adapters and the payment service; and closes
them in reverse, letting the writer commit what is queued before its connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from adapters.base import ProviderAdapter
from switch import __version__
from switch.admission import Admission, admission_middleware
from switch.api.confirm import confirm_payment, sandbox_challenge
from switch.api.dashboard import dashboard_data, dashboard_page
from switch.api.errors import (
    DEPENDENCY_ERRORS,
    ApiError,
    document_error_responses,
    handle_api_error,
    handle_dependency_error,
    handle_http_exception,
    handle_payment_error,
    handle_unexpected,
)
from switch.api.events import DOCUMENTED_SCHEMAS as EVENT_SCHEMAS
from switch.api.events import EventController
from switch.api.health import LedgerHealth, live, ready
from switch.api.metrics import instrument_payment_service
from switch.api.metrics import metrics as metrics_endpoint
from switch.api.openapi import components_for
from switch.api.payments import DOCUMENTED_SCHEMAS, PaymentController
from switch.api.ratelimit import MemoryBuckets, RedisBuckets, TokenBuckets, rate_limit_middleware
from switch.api.reviews import DOCUMENTED_SCHEMAS as REVIEW_SCHEMAS
from switch.api.reviews import ReviewController
from switch.api.risk import RiskRulesController
from switch.api.routing import RoutingController
from switch.api.security_headers import add_security_headers
from switch.api.webhooks import receive_webhook
from switch.config import ConfigError, Settings, check_serving, load_settings
from switch.embedded import embedded_database_url
from switch.errors import PaymentError
from switch.events.delivery import DeliveryWorker
from switch.events.endpoints import EventLog
from switch.ledger.migrate import migrate
from switch.ledger.writer import GroupCommitWriter
from switch.logs import configure_logging, request_id_middleware
from switch.merchants import MerchantDirectory
from switch.metrics import Metrics
from switch.ops_stats import OpsStats
from switch.payments.confirm import PaymentConfirmation
from switch.payments.facts import Profiler
from switch.payments.history import HistoryReader
from switch.payments.idempotency import IdempotencyGuard
from switch.payments.locks import KeyedLocks
from switch.payments.notifications import NotificationService
from switch.payments.recovery import AttemptRecovery, stop_task
from switch.payments.retention import purge_forever
from switch.payments.reviews import ReviewService
from switch.payments.risk_check import build_risk_check, compile_risk_document, refresh_reference_data
from switch.payments.service import PaymentService
from switch.providers import build_adapters, load_accounts
from switch.risk.rules import CompiledRules
from switch.routing.fees import build_account_routing
from switch.routing.plan import supports_method
from switch.routing.router import BREAKER_GAUGE, AccountsView, Router, RoutingConfig, compile_stored
from switch.routing.stats import MemoryRoutingStats, RedisRoutingStats
from switch.stores.base import Store
from switch.stores.documents import VersionedDocuments
from switch.stores.memory import MemoryStore
from switch.stores.redis import RedisStore
from switch.vault.cards import Vault
from switch.vault.keys import MasterKeyError, MasterKeyRing, load_master_keys
from switch.vault.redaction import install_pan_filter
from switch.vault.store import DataKeyStore

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


def _queue_depth(writer: GroupCommitWriter) -> int:
    # The writer keeps its queue private; what waits in it is the next batch.
    return len(writer._queue)


def load_vault_keys(settings: Settings) -> MasterKeyRing:
    """The vault's master keys from the settings (zero-config: generated in the data directory).

    Raises:
        ConfigError: When a configured master key is unusable.
    """
    try:
        return load_master_keys(
            key=settings.vault_master_key,
            key_file=settings.vault_master_key_file,
            previous=settings.vault_previous_master_keys,
            data_dir=settings.data_dir,
        )
    except MasterKeyError as exc:
        raise ConfigError(str(exc)) from None


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the application; resources are opened by its lifespan.

    Args:
        settings: Configuration; read from the environment when None.
    """
    settings = settings or load_settings()
    check_serving(settings)
    accounts = load_accounts(settings.providers_file) if settings.providers_file else {}
    adapters = build_adapters(accounts, sandbox_latency_ms=settings.sandbox_latency_ms)
    account_routing = build_account_routing(accounts)
    metrics = Metrics()
    operator_token = settings.operator_token or secrets.token_urlsafe(24)
    install_pan_filter()
    master_keys = load_vault_keys(settings)
    buckets: TokenBuckets = (
        RedisBuckets(settings.redis_url, settings.rate_limit_per_s, settings.rate_limit_burst)
        if settings.redis_url
        else MemoryBuckets(settings.rate_limit_per_s, settings.rate_limit_burst)
    )

    admission = Admission(settings.max_inflight)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.admission = admission
        dsn = settings.database_url or embedded_database_url(settings.data_dir)
        connect_timeout_s = settings.db_connect_timeout_ms / 1000
        command_timeout_s = settings.db_command_timeout_ms / 1000
        connection = await asyncpg.connect(dsn, timeout=connect_timeout_s)
        try:
            await migrate(connection)
            fingerprint_key = await load_fingerprint_key(connection, settings.vault_key)
        finally:
            await connection.close()
        # Every statement and every connect has a deadline: a stalled database answers 503, never hangs.
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=settings.db_pool_size,
            timeout=connect_timeout_s,
            command_timeout=command_timeout_s,
        )
        writer = GroupCommitWriter(
            lambda: asyncpg.connect(dsn, timeout=connect_timeout_s, command_timeout=command_timeout_s),
            submit_timeout_s=settings.ledger_submit_timeout_ms / 1000,
            max_queue=settings.ledger_max_queue,
        )
        ledger_health = LedgerHealth()
        ops = OpsStats()

        def on_batch(count: int, seconds: float) -> None:
            metrics.record_batch(count, seconds)
            ledger_health.record_commit()
            metrics.ledger_queue_depth.set(_queue_depth(writer))

        def on_failure() -> None:
            metrics.ledger_batches_failed.inc()
            ledger_health.record_failure()
            metrics.ledger_queue_depth.set(_queue_depth(writer))

        writer.on_batch = on_batch
        writer.on_failure = on_failure
        await writer.start()
        store: Store = RedisStore(settings.redis_url) if settings.redis_url else MemoryStore(max_keys=200_000)
        locks = KeyedLocks()
        app.state.settings = settings
        app.state.metrics = metrics
        app.state.ops = ops
        app.state.ledger_health = ledger_health
        app.state.operator_token = operator_token
        if not settings.operator_token:
            logger.warning(
                "operations page: /dashboard?token=%s (generated; set SWITCH_OPERATOR_TOKEN)", operator_token
            )
        app.state.pool = pool
        app.state.writer = writer
        app.state.store = store
        app.state.adapters = adapters
        app.state.merchants = MerchantDirectory(pool, ttl_s=settings.auth_cache_ttl_s)
        if master_keys.generated_file:
            logger.warning(
                "card vault: master key generated in %s; set SWITCH_VAULT_MASTER_KEY(_FILE) for real cards",
                master_keys.generated_file,
            )
        vault_keys = DataKeyStore(pool, master_keys)
        await vault_keys.start()
        idempotency = IdempotencyGuard(store, pool, settings.idempotency_ttl_s)
        routing_documents: VersionedDocuments[RoutingConfig] = VersionedDocuments(
            pool, "routing", compile_stored, redis_url=settings.redis_url
        )
        await routing_documents.start()
        shared_redis = aioredis.Redis.from_url(settings.redis_url) if settings.redis_url else None
        routing_stats: MemoryRoutingStats | RedisRoutingStats = (
            RedisRoutingStats(shared_redis) if shared_redis is not None else MemoryRoutingStats()
        )
        await routing_stats.start()
        app.state.router = Router(
            routing_documents,
            AccountsView(account_routing, adapters),
            routing_stats,
            lambda account, method: account in adapters and supports_method(adapters[account], method),
            static=settings.routing == "static",
            on_breaker=lambda account, state: metrics.circuit_breaker_state.labels(account).set(BREAKER_GAUGE[state]),
        )
        risk_documents: VersionedDocuments[CompiledRules] = VersionedDocuments(
            pool, "risk", compile_risk_document, redis_url=settings.redis_url
        )
        await risk_documents.start()
        app.state.risk_documents = risk_documents
        profiler = Profiler()
        app.state.risk = build_risk_check(settings, risk_documents, shared_redis, metrics)
        reference_data_task = asyncio.create_task(
            refresh_reference_data(pool, profiler, app.state.risk), name="reference-data-refresh"
        )
        app.state.payments = PaymentService(
            pool=pool,
            writer=writer,
            adapters=adapters,
            vault=Vault(fingerprint_key, vault_keys),
            idempotency=idempotency,
            router=app.state.router,
            risk=app.state.risk,
            profiler=profiler,
            metrics=metrics,
            locks=locks,
        )
        instrument_payment_service(app.state.payments, metrics, ops)
        app.state.risk_history = HistoryReader(pool)
        app.state.reviews = ReviewService(pool, app.state.payments)
        app.state.confirmations = PaymentConfirmation(
            pool=pool, writer=writer, adapters=adapters, locks=locks, risk=app.state.risk
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
        app.state.events = EventLog(pool)
        app.state.deliveries = DeliveryWorker(pool)
        delivery_task = asyncio.create_task(app.state.deliveries.run_forever(), name="event-delivery")
        try:
            yield
        finally:
            await stop_task(delivery_task)
            await app.state.deliveries.close()
            await buckets.close()
            await stop_task(retention_task)
            await stop_task(recovery_task)
            await stop_task(reference_data_task)
            await routing_stats.stop()
            await routing_documents.stop()
            await risk_documents.stop()
            if shared_redis is not None:
                await shared_redis.aclose()
            await writer.stop(timeout_s=settings.shutdown_timeout_s)
            for adapter in adapters.values():
                await adapter.close()
            await store.close()
            await pool.close()
            metrics.close()

    app = Litestar(
        route_handlers=[
            PaymentController,
            RoutingController,
            confirm_payment,
            sandbox_challenge,
            RiskRulesController,
            ReviewController,
            receive_webhook,
            metrics_endpoint,
            live,
            ready,
            dashboard_page,
            dashboard_data,
            EventController,
        ],
        # Logging is configured once by switch.logs (JSON or text, request ids); Litestar's own
        # default would replace the root handlers at start-up.
        logging_config=None,
        before_send=[add_security_headers],
        middleware=[
            request_id_middleware,
            admission_middleware(admission),
            rate_limit_middleware(buckets),
        ],
        lifespan=[lifespan],
        exception_handlers={
            ApiError: handle_api_error,
            PaymentError: handle_payment_error,
            HTTPException: handle_http_exception,
            **dict.fromkeys(DEPENDENCY_ERRORS, handle_dependency_error),
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
    documented = components_for(*DOCUMENTED_SCHEMAS, *EVENT_SCHEMAS, *REVIEW_SCHEMAS)
    document.components.schemas.update(documented.schemas or {})
    document_error_responses(document)
    return app


def create_app_from_env() -> Litestar:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    install_pan_filter()  # after the handlers exist, so each of them masks too
    return create_app(settings)
