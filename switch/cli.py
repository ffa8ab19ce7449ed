"""The ``switch`` command: serve, migrate, merchants, ledger verify, recovery list, simulator.

Every failure is one clear line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import pathlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

import asyncpg

from switch.config import ConfigError, Settings, check_serving, load_settings
from switch.embedded import EmbeddedDatabaseError, embedded_database_url
from switch.ledger.migrate import migrate
from switch.ledger.verify import verify_ledger
from switch.merchants import MerchantExists, create_merchant, list_merchants, set_merchant_providers
from switch.providers import SANDBOX, load_accounts

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

    settings = load_settings(host=args.host, port=args.port, workers=args.workers)
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
    serving = Settings(**{**_as_dict(settings), "database_url": database_url})
    asyncio.run(_with_migrated_connection(serving, lambda _: _noop()))
    url = f"http://{settings.host}:{settings.port}"
    print(f"payment switch listening on {url}  (OpenAPI: {url}/schema/openapi.json)")
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
    uvicorn.run(
        "switch.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        access_log=False,
        backlog=4096,
    )
    return 0


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
