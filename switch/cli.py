"""The ``switch`` command: serve, migrate, merchants, routing, ledger verify, recovery list, simulator.

Every failure is one clear line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import asyncpg

from switch.config import ConfigError, Settings, check_serving, load_settings
from switch.embedded import EmbeddedDatabaseError, embedded_database_url
from switch.ledger.migrate import migrate
from switch.ledger.verify import verify_ledger
from switch.logs import LOG_FORMATS, uvicorn_log_config
from switch.merchants import MerchantExists, create_merchant, list_merchants, set_merchant_providers
from switch.metrics import MULTIPROC_ENV
from switch.providers import SANDBOX, load_accounts

if TYPE_CHECKING:
    from switch.stores.documents import VersionedDocuments

DEMO_MERCHANT = "demo"


class CliError(Exception):
    """A failure to report as one line and exit code 1 (or ``exit_code``)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        """Build the error."""
        super().__init__(message)
        self.exit_code = exit_code


def _database_url(settings: Settings) -> str:
    return settings.database_url or embedded_database_url(settings.data_dir)


async def _connect(settings: Settings) -> asyncpg.Connection:
    url = _database_url(settings)
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise CliError(f"cannot connect to PostgreSQL: {exc}") from None


async def _with_migrated_connection(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    connection = await _connect(settings)
    try:
        await migrate(connection)
        return await work(connection)
    finally:
        await connection.close()


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    """Apply pending schema migrations."""

    async def work(connection: asyncpg.Connection) -> int:
        applied = await migrate(connection)
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
        return 0

    async def run() -> int:
        connection = await _connect(settings)
        try:
            return await work(connection)
        finally:
            await connection.close()

    return asyncio.run(run())


def cmd_merchants_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a merchant and print its secret key once."""

    async def work(connection: asyncpg.Connection) -> int:
        try:
            merchant, key = await create_merchant(connection, args.name)
        except MerchantExists as exc:
            raise CliError(str(exc)) from None
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
        print(f"merchant:   {merchant.id}")
        print(f"name:       {merchant.name}")
        print(f"secret key: {key}")
        print("The secret key is shown only this once; store it now.")
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_merchants_list(settings: Settings, _: argparse.Namespace) -> int:
    """List merchants (never their keys, only the key prefix)."""

    async def work(connection: asyncpg.Connection) -> int:
        rows = await list_merchants(connection)
        if not rows:
            print("no merchants yet; create one with: switch merchants create NAME")
            return 0
        print(f"{'id':<30} {'name':<30} {'key':<16} {'providers':<20} created")
        for row in rows:
            created = datetime.datetime.fromtimestamp(row["created"], datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            providers = ",".join(row["providers"])
            print(f"{row['id']:<30} {row['name']:<30} {row['key_prefix'] + '...':<16} {providers:<20} {created}")
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_merchants_providers(settings: Settings, args: argparse.Namespace) -> int:
    """Set the provider accounts a merchant routes to, in priority order."""
    known = {SANDBOX, *(load_accounts(settings.providers_file) if settings.providers_file else {})}
    unknown = [name for name in args.accounts if name not in known]
    if unknown:
        raise CliError(f"unknown provider account(s) {', '.join(unknown)}; configured: {', '.join(sorted(known))}", 2)

    async def work(connection: asyncpg.Connection) -> int:
        try:
            merchant = await set_merchant_providers(connection, args.merchant, tuple(args.accounts))
        except LookupError as exc:
            raise CliError(str(exc)) from None
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
        print(f"{merchant.id} ({merchant.name}) routes to: {', '.join(merchant.providers)}")
        print("Running switches apply it within 30 seconds.")
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_ledger_verify(settings: Settings, _: argparse.Namespace) -> int:
    """Check the ledger's invariants; exit 1 with a report when one fails."""

    async def work(connection: asyncpg.Connection) -> int:
        report = await verify_ledger(connection)
        print(report.render())
        return 0 if report.ok else 1

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_recovery_list(settings: Settings, args: argparse.Namespace) -> int:
    """List open intents recovery has not settled (only those stuck for an operator with ``--stuck``)."""
    from switch.payments.recovery import list_unresolved

    async def work(connection: asyncpg.Connection) -> int:
        found = await list_unresolved(connection, stuck_only=args.stuck)
        if not found:
            print("no stuck intents" if args.stuck else "no unresolved intents: every provider call is settled")
            return 0
        now = time.time()
        header = ("kind", "intent", "payment", "provider", "amount", "age", "checks")
        print("{:<10} {:<32} {:<32} {:<14} {:>12} {:>9} {:>6} stuck".format(*header))
        for item in found:
            age = f"{int(now - item.created)}s"
            stuck = "yes" if item.stuck_since is not None else "no"
            amount = f"{item.amount} {item.currency}"
            print(
                f"{item.kind:<10} {item.id:<32} {item.payment_id:<32} {item.provider:<14} {amount:>12} {age:>9}"
                f" {item.checks:>6} {stuck}"
            )
        # Exit 1 when something waits for an operator, so a cron job or probe can alert on it.
        return 1 if any(item.stuck_since is not None for item in found) else 0

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_bins_load(settings: Settings, args: argparse.Namespace) -> int:
    """Replace the operator's BIN ranges with a CSV file; running switches pick them up by generation."""
    from switch.risk.bins import BinTableError, parse_bins_csv, store_bins

    try:
        rows = parse_bins_csv(pathlib.Path(args.path).read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise CliError(f"cannot read {args.path}: {exc.strerror or exc}", 2) from None
    except UnicodeDecodeError:
        raise CliError(f"{args.path} is not UTF-8 text", 2) from None
    except BinTableError as exc:
        raise CliError(f"{args.path}: {exc}", 2) from None

    async def work(connection: asyncpg.Connection) -> int:
        generation = await store_bins(connection, rows, source=pathlib.Path(args.path).name)
        print(f"loaded {len(rows)} BIN ranges from {args.path} (generation {generation})")
        print("Running switches merge them over the bundled table on their next BIN refresh.")
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_bins_lookup(settings: Settings, args: argparse.Namespace) -> int:
    """Show what the BIN table (bundled and operator-loaded) says about a BIN or card number."""
    from switch.risk.bins import BinTable

    table = BinTable()
    try:
        table.lookup(args.number)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None

    async def work(connection: asyncpg.Connection) -> int:
        await table.refresh(connection)
        info = table.lookup(args.number)
        if info is None:
            print(f"bin:      {args.number.replace(' ', '').replace('-', '')[:6]}  (no range covers it)")
            return 1
        print(f"bin:      {info.bin}")
        print(f"brand:    {info.brand or '-'}")
        print(f"country:  {info.country or '-'}")
        print(f"funding:  {info.funding or '-'}")
        print(f"issuer:   {info.issuer or '-'}")
        source = f"operator table generation {table.generation}" if table.generation else "bundled table"
        print(f"source:   {source}")
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_sanctions_load(settings: Settings, args: argparse.Namespace) -> int:
    """Replace one sanctions list with an OFAC or OpenSanctions file; running switches reload it."""
    from switch.risk.sanctions import check_list_name, store_list
    from switch.risk.sanctions_files import SanctionsFileError, read_list_files

    try:
        if args.list is not None:
            check_list_name(args.list)
        parsed = read_list_files(args.path, args.alt)
    except (SanctionsFileError, ValueError) as exc:
        raise CliError(str(exc), 2) from None
    list_name = args.list or ("ofac_sdn" if parsed.format == "ofac" else "opensanctions")

    async def work(connection: asyncpg.Connection) -> int:
        source = ", ".join(parsed.sources)
        generation = await store_list(connection, list_name, parsed.entries, format=parsed.format, source=source)
        print(
            f"loaded {len(parsed.entries)} entries ({parsed.alias_count} aliases) into list {list_name}"
            f" from {source} (generation {generation})"
        )
        print("Running switches screen against it after their next refresh (about a second).")
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_sanctions_screen(settings: Settings, args: argparse.Namespace) -> int:
    """Screen one name against the loaded lists (or the bundled synthetic list) and print the matches."""
    from switch.risk.sanctions import DEFAULT_THRESHOLD, SanctionsScreener

    threshold = args.threshold if args.threshold is not None else settings.sanctions_threshold or DEFAULT_THRESHOLD
    if not 0 < threshold <= 100:
        raise CliError(f"--threshold must be in (0, 100], got {threshold:g}", 2)

    async def work(connection: asyncpg.Connection) -> int:
        screener = SanctionsScreener(threshold=threshold)
        await screener.refresh(connection)
        index = screener.index
        if screener.source == "bundled":
            print(f"screened against the bundled synthetic list ({index.entry_count} entries; no list loaded)")
        else:
            print(
                f"screened against {index.entry_count} entries of the loaded lists (generation {screener.generation})"
            )
        matches = screener.screen(args.name)
        if not matches:
            print(f"no match at threshold {threshold:g}")
            return 0
        print(f"{'score':>5}  {'list':<16} {'entry':<14} {'programs':<24} matched")
        for match in matches:
            programs = ",".join(match.programs) or "-"
            print(f"{match.score:>5.1f}  {match.list_name:<16} {match.entry_id:<14} {programs:<24} {match.matched}")
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_sanctions_status(settings: Settings, _: argparse.Namespace) -> int:
    """Show the loaded sanctions lists and the generation running switches poll."""
    from switch.risk.sanctions import bundled_index, sanctions_status

    async def work(connection: asyncpg.Connection) -> int:
        status = await sanctions_status(connection)
        if not status.lists:
            print(
                f"no list loaded: switches screen against the bundled synthetic list ({bundled_index().entry_count}"
                " invented entries); load one with: switch sanctions load PATH"
            )
            return 0
        print(f"generation {status.generation}")
        print(f"{'list':<16} {'format':<14} {'entries':>8} {'aliases':>8} {'loaded':<21} source")
        for item in status.lists:
            loaded = datetime.datetime.fromtimestamp(item.loaded_at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            print(
                f"{item.list_name:<16} {item.format:<14} {item.entries:>8} {item.aliases:>8} {loaded:<21} {item.source}"
            )
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


async def _routing_merchant(connection: asyncpg.Connection, merchant: str) -> tuple[str, str, tuple[str, ...]]:
    """The merchant's (test scope) id, name and provider accounts, by id or name."""
    row = await connection.fetchrow(
        "SELECT id, name, providers FROM merchants WHERE (id = $1 OR name = $1) AND NOT livemode", merchant
    )
    if row is None:
        raise CliError(f"no merchant with id or name {merchant!r}")
    return str(row["id"]), str(row["name"]), tuple(row["providers"])


async def _with_routing_documents(
    settings: Settings, work: Callable[[asyncpg.Connection, VersionedDocuments[Any]], Awaitable[int]]
) -> int:
    """Run ``work`` with a migrated connection and the routing documents store (as the API keeps them)."""
    from switch.routing.router import compile_stored
    from switch.stores.documents import VersionedDocuments

    async def with_store(connection: asyncpg.Connection) -> int:
        url = _database_url(settings)
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2, timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise CliError(f"cannot connect to PostgreSQL: {exc}") from None
        # Not started: a worker's store subscribes to changes, which this one-shot command does not
        # need; it announces its own change with _announce_routing_change instead.
        documents: VersionedDocuments[Any] = VersionedDocuments(pool, "routing", compile_stored)
        try:
            return await work(connection, documents)
        finally:
            await pool.close()

    return await _with_migrated_connection(settings, with_store)


async def _announce_routing_change(settings: Settings, merchant_id: str) -> None:
    """Tell running workers to drop their cached config of the merchant, as a worker's own PUT does.

    Published on the channel :class:`~switch.stores.documents.VersionedDocuments` listens on, in its
    ``kind:merchant_id`` form. The change is committed either way, so a failure is a warning.
    """
    if not settings.redis_url:
        print(
            "No SWITCH_REDIS_URL: a running switch that already cached this merchant's config keeps it"
            " until restarted (PUT /v1/routing applies at once)."
        )
        return
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    from switch.stores.documents import CHANNEL

    client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        workers = await client.publish(CHANNEL, f"routing:{merchant_id}")
    except (RedisError, OSError) as exc:
        print(
            f"warning: stored, but running switches were not told through Redis ({exc}); they apply it when restarted",
            file=sys.stderr,
        )
        return
    finally:
        await client.aclose()
    print(f"Announced on Redis ({workers} subscriber(s)); running switches apply it within a second.")


def _configured_accounts(settings: Settings) -> set[str]:
    return {SANDBOX, *(load_accounts(settings.providers_file) if settings.providers_file else {})}


def _print_document(body: dict[str, Any]) -> None:
    print(json.dumps(body, indent=2))


def cmd_routing_show(settings: Settings, args: argparse.Namespace) -> int:
    """Print the merchant's active routing config (version 0: the implied default) and its canary."""
    from switch.routing.document import implied_default, to_builtins

    async def work(connection: asyncpg.Connection, documents: VersionedDocuments[Any]) -> int:
        merchant_id, name, providers = await _routing_merchant(connection, args.merchant)
        head = await documents.head(merchant_id)
        if head.active is None:
            print(f"{merchant_id} ({name}): version 0, no config stored: priority over its accounts")
            _print_document(to_builtins(implied_default(providers)))
            return 0
        print(f"{merchant_id} ({name}): version {head.active_version} active")
        _print_document(to_builtins(head.active.document))
        if head.canary is not None:
            print(f"canary: version {head.canary_version} at {head.canary_percent}% of traffic")
            _print_document(to_builtins(head.canary.document))
        return 0

    return asyncio.run(_with_routing_documents(settings, work))


def cmd_routing_set(settings: Settings, args: argparse.Namespace) -> int:
    """Validate a routing config file against the merchant's accounts and store it as a new version."""
    import msgspec

    from switch.routing.document import DocumentError, parse_document, to_builtins

    try:
        raw = pathlib.Path(args.path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.path}: {exc.strerror or exc}", 2) from None
    try:
        msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise CliError(f"{args.path} is not valid JSON: {exc}", 2) from None
    configured = _configured_accounts(settings)

    async def work(connection: asyncpg.Connection, documents: VersionedDocuments[Any]) -> int:
        merchant_id, name, providers = await _routing_merchant(connection, args.merchant)
        # What the API accepts: the merchant's own accounts, as far as this switch configures them.
        routable = [account for account in providers if account in configured]
        try:
            document = parse_document(raw, routable)
        except DocumentError as exc:
            where = f" at {exc.param}" if exc.param else ""
            raise CliError(f"{args.path}: invalid routing config{where}: {exc.message}", 2) from None
        percent = document.rollout.percent
        canary = percent if percent < 100 else None
        version = await documents.put(merchant_id, to_builtins(document), canary_percent=canary)
        head = await documents.head(merchant_id)
        if head.canary_version == version:
            state = f"canary at {head.canary_percent}% of traffic (sticky per {document.rollout.sticky})"
        else:
            state = "active"
        print(f"stored routing config version {version} for {merchant_id} ({name}): {state}")
        await _announce_routing_change(settings, merchant_id)
        return 0

    return asyncio.run(_with_routing_documents(settings, work))


def cmd_routing_versions(settings: Settings, args: argparse.Namespace) -> int:
    """List the merchant's kept routing config versions, newest first."""

    async def work(connection: asyncpg.Connection, documents: VersionedDocuments[Any]) -> int:
        merchant_id, name, _ = await _routing_merchant(connection, args.merchant)
        kept = await documents.versions(merchant_id)
        if not kept:
            print(f"{merchant_id} ({name}) has no routing config; it routes by priority over its accounts")
            return 0
        head = await documents.head(merchant_id)
        print(f"{'version':>7}  {'state':<12} {'created':<21} {'rules':>5}  default")
        for stored in kept:
            if stored.version == head.active_version:
                state = "active"
            elif stored.version == head.canary_version:
                state = f"canary {head.canary_percent}%"
            else:
                state = "-"
            created = datetime.datetime.fromtimestamp(stored.created, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            rules = stored.body.get("rules") or []
            default = stored.body.get("default") or {}
            target = f"{default.get('strategy')} over {','.join(default.get('candidates') or [])}"
            print(f"{stored.version:>7}  {state:<12} {created:<21} {len(rules):>5}  {target}")
        return 0

    return asyncio.run(_with_routing_documents(settings, work))


def cmd_routing_rollback(settings: Settings, args: argparse.Namespace) -> int:
    """Make a kept version active again (no new version is created); a running canary stops."""
    from switch.stores.documents import UnknownVersion

    if args.version < 1:
        raise CliError(f"VERSION must be 1 or more, got {args.version}", 2)

    async def work(connection: asyncpg.Connection, documents: VersionedDocuments[Any]) -> int:
        merchant_id, name, _ = await _routing_merchant(connection, args.merchant)
        try:
            await documents.activate(merchant_id, args.version)
        except UnknownVersion:
            kept = ", ".join(str(stored.version) for stored in reversed(await documents.versions(merchant_id)))
            raise CliError(
                f"{merchant_id} ({name}) has no routing config version {args.version}"
                + (f" (kept: {kept})" if kept else " (none stored)")
            ) from None
        print(f"routing config version {args.version} is active again for {merchant_id} ({name})")
        await _announce_routing_change(settings, merchant_id)
        return 0

    return asyncio.run(_with_routing_documents(settings, work))


def cmd_merchants_rotate_key(settings: Settings, args: argparse.Namespace) -> int:
    """Issue a new secret key; the old keys of that mode work until revoked or for ``--expires-in`` hours."""
    from switch.merchants import rotate_key

    async def work(connection: asyncpg.Connection) -> int:
        expires_in_s = int(args.expires_in * 3600) if args.expires_in is not None else None
        try:
            facts, key = await rotate_key(connection, args.merchant, mode=args.mode, expires_in_s=expires_in_s)
        except LookupError as exc:
            raise CliError(str(exc)) from None
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
        print(f"key id:     {facts.id}")
        print(f"mode:       {facts.mode} (scope {facts.merchant_id})")
        print(f"secret key: {key}")
        if expires_in_s is None:
            print("The previous keys keep working until: switch merchants revoke-key MERCHANT KEY_ID")
        else:
            print(f"The previous {facts.mode} keys stop working in {args.expires_in:g} hours.")
        print("The secret key is shown only this once; store it now.")
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_merchants_revoke_key(settings: Settings, args: argparse.Namespace) -> int:
    """Revoke one key by its id or shown prefix; workers refuse it within the auth cache's TTL."""
    from switch.merchants import revoke_key

    async def work(connection: asyncpg.Connection) -> int:
        try:
            facts = await revoke_key(connection, args.merchant, args.key)
        except LookupError as exc:
            raise CliError(str(exc)) from None
        print(
            f"revoked {facts.id} ({facts.prefix}...); running switches refuse it within {settings.auth_cache_ttl_s} s"
        )
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_merchants_keys(settings: Settings, args: argparse.Namespace) -> int:
    """List a merchant's keys of both modes (prefixes and state only, never the keys)."""
    from switch.merchants import list_keys

    async def work(connection: asyncpg.Connection) -> int:
        try:
            keys = await list_keys(connection, args.merchant)
        except LookupError as exc:
            raise CliError(str(exc)) from None
        now = time.time()
        print(f"{'key id':<32} {'mode':<5} {'prefix':<20} state")
        for key in keys:
            if key.revoked_at is not None:
                state = "revoked"
            elif key.expires_at is not None:
                state = "expired" if key.expires_at <= now else f"expires in {int(key.expires_at - now)} s"
            else:
                state = "active"
            print(f"{key.id:<32} {key.mode:<5} {key.prefix + '...':<20} {state}")
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


def cmd_vault_rotate_key(settings: Settings, _: argparse.Namespace) -> int:
    """New data key, all data keys re-wrapped under the current master key, all cards re-sealed; online."""
    from switch.app import load_vault_keys
    from switch.vault.rotation import rotate_key
    from switch.vault.store import VaultKeyMissing

    ring = load_vault_keys(settings)

    async def work(connection: asyncpg.Connection) -> int:
        try:
            report = await rotate_key(connection, ring)
        except VaultKeyMissing as exc:
            raise CliError(f"{exc}; add it to SWITCH_VAULT_PREVIOUS_MASTER_KEYS and run again") from None
        print(f"active data key: {report.new_key_id} (wrapped by master key {ring.current_id})")
        print(f"re-wrapped {report.rewrapped} data key(s); re-sealed {report.resealed} card(s)")
        if report.remaining:
            print(
                f"{report.remaining} card(s) were sealed under an older key by workers that had not yet seen"
                " the new one; they open normally and the next rotation re-seals them"
            )
        return 0

    return asyncio.run(_with_migrated_connection(settings, work))


def _demo_key(settings: Settings) -> str | None:
    """Create the demo merchant on the first zero-config start; return its key (kept in the data dir)."""
    key_file = pathlib.Path(settings.data_dir).expanduser().resolve() / "demo_key"

    async def work(connection: asyncpg.Connection) -> int:
        exists = await connection.fetchval("SELECT 1 FROM merchants WHERE name = $1", DEMO_MERCHANT)
        if exists:
            return 0
        _, key = await create_merchant(connection, DEMO_MERCHANT)
        # Zero-config is for trying the switch locally: keep the demo key readable by the owner only.
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return 0

    asyncio.run(_with_migrated_connection(settings, work))
    return key_file.read_text().strip() if key_file.exists() else None


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run the HTTP server (uvicorn with uvloop and httptools)."""
    import uvicorn

    settings = load_settings(host=args.host, port=args.port, workers=args.workers, log_format=args.log_format)
    check_serving(settings)
    if settings.providers_file:
        load_accounts(settings.providers_file)  # fail here, in one line, not in every worker
    zero_config = not settings.database_url
    database_url = _database_url(settings)
    # Workers re-read the environment, so they find the same database and settings.
    os.environ["SWITCH_DATABASE_URL"] = database_url
    os.environ["SWITCH_HOST"] = settings.host
    os.environ["SWITCH_PORT"] = str(settings.port)
    os.environ["SWITCH_WORKERS"] = str(settings.workers)
    os.environ["SWITCH_LOG_FORMAT"] = settings.log_format
    # Every worker must accept the same operations-page token.
    operator_token = settings.operator_token or secrets.token_urlsafe(24)
    os.environ["SWITCH_OPERATOR_TOKEN"] = operator_token
    serving = Settings(**{**_as_dict(settings), "database_url": database_url})
    asyncio.run(_with_migrated_connection(serving, lambda _: _noop()))
    url = f"http://{settings.host}:{settings.port}"
    from switch.app import load_vault_keys
    from switch.vault.redaction import install_pan_filter

    install_pan_filter()  # uvicorn's own logging in this process; each worker installs it again
    master_keys = load_vault_keys(settings)
    print(f"payment switch listening on {url}  (OpenAPI: {url}/schema/openapi.json)")
    if master_keys.generated_file:
        print(
            f"WARNING: card vault master key generated in {master_keys.generated_file} (beside the data);"
            " set SWITCH_VAULT_MASTER_KEY or SWITCH_VAULT_MASTER_KEY_FILE before storing real cards"
        )
    if settings.operator_token:
        print(f"operations page: {url}/dashboard  (token: SWITCH_OPERATOR_TOKEN)")
    else:
        print(f"operations page: {url}/dashboard?token={operator_token}")
    metrics_dir = _multiprocess_metrics_dir(settings.workers)
    if metrics_dir is not None:
        print(f"metrics: {settings.workers} workers summed through {metrics_dir.path}")
    if zero_config:
        key = _demo_key(serving)
        print(f"embedded PostgreSQL in {pathlib.Path(settings.data_dir).resolve() / 'pg'}")
        if key:
            print(f"demo merchant key: {key}")
            print(
                f"try: curl -s {url}/v1/payments -H 'Authorization: Bearer {key}' "
                '-H \'Content-Type: application/json\' -d \'{"amount": 1250, "currency": "EUR", '
                '"payment_method": {"type": "card", "card": {"number": "4242424242424242", '
                '"exp_month": 12, "exp_year": 2030, "cvc": "123"}}}\''
            )
    sys.stdout.flush()
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting through SystemExit instead
    # runs the atexit hooks, so the embedded PostgreSQL this process started is stopped too.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run(
            "switch.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            http="httptools",
            log_level=settings.log_level.lower(),
            log_config=uvicorn_log_config(settings.log_level, settings.log_format),
            access_log=False,
            backlog=4096,
            # SIGTERM: stop accepting, let in-flight requests finish for this long, then the
            # lifespan drains the ledger queue (bounded by the same deadline).
            timeout_graceful_shutdown=settings.shutdown_timeout_s,
        )
    finally:
        if metrics_dir is not None:
            metrics_dir.close()
    return 0


class _MetricsDir:
    """The multiprocess metrics directory of one ``serve`` run: emptied at start, removed at exit
    when this run created it."""

    def __init__(self, path: pathlib.Path, owned: bool) -> None:
        self.path = path
        self.owned = owned

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)


def _multiprocess_metrics_dir(workers: int) -> _MetricsDir | None:
    """With several workers, give them one metrics directory (PROMETHEUS_MULTIPROC_DIR) so that
    ``/metrics`` on any of them answers the sum over all; a directory the operator set is reused."""
    given = os.environ.get(MULTIPROC_ENV)
    if workers <= 1 and not given:
        return None
    if given:
        path, owned = pathlib.Path(given), False
        path.mkdir(parents=True, exist_ok=True)
        # Values of an earlier run would be added to this one's.
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path, owned = pathlib.Path(tempfile.mkdtemp(prefix="switch-metrics-")), True
    os.environ[MULTIPROC_ENV] = str(path)
    return _MetricsDir(path, owned)


def cmd_simulator(_: Settings, args: argparse.Namespace) -> int:
    """Run the provider simulator (every provider's wire format, with fault knobs)."""
    import msgspec

    from adapters.simulator import load_config, run

    if args.config is not None:
        try:
            load_config(args.config)
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            raise CliError(f"cannot load simulator config {args.config}: {exc}", 2) from None
    print(f"provider simulator listening on http://{args.host}:{args.port}  (admin: /_sim)")
    sys.stdout.flush()
    run(args.host, args.port, args.config)
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _noop() -> int:
    return 0


def _as_dict(settings: Settings) -> dict[str, object]:
    import msgspec

    return msgspec.structs.asdict(settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switch", description="Open-source payment switch.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, env SWITCH_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default 8000, env SWITCH_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1; >1 needs SWITCH_REDIS_URL)")
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="auto (text on a terminal, else JSON), text or json (SWITCH_LOG_FORMAT)",
    )
    serve.set_defaults(handler=cmd_serve)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(handler=cmd_migrate)

    merchants = commands.add_parser("merchants", help="manage merchants")
    merchant_commands = merchants.add_subparsers(dest="merchant_command", required=True, metavar="ACTION")
    create = merchant_commands.add_parser("create", help="create a merchant and print its secret key")
    create.add_argument("name", help="merchant name (unique)")
    create.set_defaults(handler=cmd_merchants_create)
    merchant_commands.add_parser("list", help="list merchants").set_defaults(handler=cmd_merchants_list)
    providers = merchant_commands.add_parser("providers", help="set the provider accounts a merchant routes to")
    providers.add_argument("merchant", help="merchant id or name")
    providers.add_argument("accounts", nargs="+", help="provider account names, in priority order")
    providers.set_defaults(handler=cmd_merchants_providers)
    rotate = merchant_commands.add_parser("rotate-key", help="issue a new secret key (old ones overlap)")
    rotate.add_argument("merchant", help="merchant id or name")
    rotate.add_argument("--mode", choices=("test", "live"), default="test", help="sk_test_ (default) or sk_live_")
    rotate.add_argument(
        "--expires-in", type=float, metavar="HOURS", help="the previous keys of that mode stop working after HOURS"
    )
    rotate.set_defaults(handler=cmd_merchants_rotate_key)
    revoke = merchant_commands.add_parser("revoke-key", help="revoke one secret key")
    revoke.add_argument("merchant", help="merchant id or name")
    revoke.add_argument("key", help="the key's id (key_...) or its shown prefix")
    revoke.set_defaults(handler=cmd_merchants_revoke_key)
    keys = merchant_commands.add_parser("keys", help="list a merchant's keys (prefixes and state)")
    keys.add_argument("merchant", help="merchant id or name")
    keys.set_defaults(handler=cmd_merchants_keys)

    vault = commands.add_parser("vault", help="card vault keys")
    vault_commands = vault.add_subparsers(dest="vault_command", required=True, metavar="ACTION")
    vault_commands.add_parser(
        "rotate-key", help="activate a new data key, re-wrap all keys, re-seal all cards (online)"
    ).set_defaults(handler=cmd_vault_rotate_key)

    simulator = commands.add_parser("simulator", help="run the provider simulator for tests and load tests")
    simulator.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    simulator.add_argument("--port", type=int, default=8420, help="port to bind (default 8420)")
    simulator.add_argument("--config", help="JSON or TOML file of per-provider knobs")
    simulator.set_defaults(handler=cmd_simulator)

    ledger = commands.add_parser("ledger", help="ledger tools")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    ledger_commands.add_parser("verify", help="check the ledger invariants").set_defaults(handler=cmd_ledger_verify)

    recovery = commands.add_parser("recovery", help="intents whose provider outcome is not settled yet")
    recovery_commands = recovery.add_subparsers(dest="recovery_command", required=True, metavar="ACTION")
    unresolved = recovery_commands.add_parser(
        "list", help="list unresolved authorization attempts and capture/void/refund operations"
    )
    unresolved.add_argument("--stuck", action="store_true", help="only those marked for an operator")
    unresolved.set_defaults(handler=cmd_recovery_list)

    bins = commands.add_parser("bins", help="the BIN table: card brand, country and funding type by first digits")
    bins_commands = bins.add_subparsers(dest="bins_command", required=True, metavar="ACTION")
    bins_load = bins_commands.add_parser("load", help="replace the operator's BIN ranges with a CSV file")
    bins_load.add_argument("path", help="CSV with the header bin_low,bin_high,brand,country,funding,issuer")
    bins_load.set_defaults(handler=cmd_bins_load)
    bins_lookup = bins_commands.add_parser("lookup", help="show what the BIN table says about a BIN")
    bins_lookup.add_argument("number", metavar="NUMBER_OR_BIN", help="a BIN (6 to 8 digits) or a test card number")
    bins_lookup.set_defaults(handler=cmd_bins_lookup)

    sanctions = commands.add_parser("sanctions", help="sanctions lists: load, screen a name, status")
    sanctions_commands = sanctions.add_subparsers(dest="sanctions_command", required=True, metavar="ACTION")
    sanctions_load = sanctions_commands.add_parser("load", help="replace a list with an OFAC or OpenSanctions file")
    sanctions_load.add_argument(
        "path",
        help="OFAC sdn.csv (its alt.csv beside it is read too), OpenSanctions targets.simple.csv, or their folder",
    )
    sanctions_load.add_argument(
        "--list", metavar="NAME", help="list to replace (default ofac_sdn or opensanctions, by format)"
    )
    sanctions_load.add_argument("--alt", metavar="PATH", help="OFAC alt.csv when it is not beside sdn.csv")
    sanctions_load.set_defaults(handler=cmd_sanctions_load)
    sanctions_screen = sanctions_commands.add_parser("screen", help="screen a name and print the matches")
    sanctions_screen.add_argument("name", help="the name to screen")
    sanctions_screen.add_argument("--threshold", type=float, help="lowest score that matches, 1-100")
    sanctions_screen.set_defaults(handler=cmd_sanctions_screen)
    sanctions_commands.add_parser("status", help="show the loaded lists").set_defaults(handler=cmd_sanctions_status)

    routing = commands.add_parser("routing", help="a merchant's routing config: show, set, versions, rollback")
    routing_commands = routing.add_subparsers(dest="routing_command", required=True, metavar="ACTION")
    routing_show = routing_commands.add_parser("show", help="print the active config (and a rolling-out canary)")
    routing_show.add_argument("merchant", help="merchant id or name")
    routing_show.set_defaults(handler=cmd_routing_show)
    routing_set = routing_commands.add_parser("set", help="validate a JSON config file and store it as a new version")
    routing_set.add_argument("merchant", help="merchant id or name")
    routing_set.add_argument("path", metavar="FILE", help="the routing config, JSON (DESIGN section 7)")
    routing_set.set_defaults(handler=cmd_routing_set)
    routing_versions = routing_commands.add_parser("versions", help="list the kept versions, newest first")
    routing_versions.add_argument("merchant", help="merchant id or name")
    routing_versions.set_defaults(handler=cmd_routing_versions)
    routing_rollback = routing_commands.add_parser("rollback", help="make an earlier version active again")
    routing_rollback.add_argument("merchant", help="merchant id or name")
    routing_rollback.add_argument("version", type=int, metavar="VERSION", help="a kept version number")
    routing_rollback.set_defaults(handler=cmd_routing_rollback)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``switch`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        return int(args.handler(settings, args))
    except (ConfigError, EmbeddedDatabaseError) as exc:
        _fail(str(exc), 2)
    except CliError as exc:
        _fail(str(exc), exc.exit_code)
    except asyncpg.PostgresError as exc:
        _fail(f"database error: {exc}", 1)
    except (OSError, TimeoutError) as exc:
        _fail(f"cannot reach a required service: {exc}", 1)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> NoReturn:
    print(f"switch: error: {message}", file=sys.stderr)
    raise SystemExit(code)


if __name__ == "__main__":
    raise SystemExit(main())
