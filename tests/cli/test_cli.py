"""The ``switch`` command: migrate, merchants, ledger verify, serve; failures are one line."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import asyncpg
import pytest

from tests.conftest import temporary_database

SWITCH = [sys.executable, "-m", "switch.cli"]


def run_switch(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    environment.update(env or {})
    return subprocess.run([*SWITCH, *args], capture_output=True, text=True, env=environment, timeout=timeout)


@pytest.fixture
def fresh_database(server_url: str) -> Iterator[str]:
    with temporary_database(server_url, "switch_cli_") as url:
        yield url


def _fetch(url: str, sql: str, *args: object) -> list:
    async def run() -> list:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetch(sql, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


def test_migrate_applies_once_then_reports_up_to_date(fresh_database):
    env = {"SWITCH_DATABASE_URL": fresh_database}
    first = run_switch("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "0001_initial.sql" in first.stdout
    second = run_switch("migrate", env=env)
    assert second.returncode == 0
    assert "up to date" in second.stdout


def test_merchants_create_prints_the_key_once_and_stores_only_a_hash(fresh_database):
    env = {"SWITCH_DATABASE_URL": fresh_database}
    result = run_switch("merchants", "create", "Acme Trading", env=env)
    assert result.returncode == 0, result.stderr
    key = next(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("secret key:"))
    assert key.startswith("sk_test_") and len(key) > 30
    rows = _fetch(fresh_database, "SELECT name, key_hash, key_prefix FROM merchants")
    assert len(rows) == 1
    assert key.encode() not in bytes(rows[0]["key_hash"])
    listed = run_switch("merchants", "list", env=env)
    assert listed.returncode == 0
    assert "Acme Trading" in listed.stdout
    assert key not in listed.stdout


def test_a_duplicate_merchant_name_is_one_line_error(fresh_database):
    env = {"SWITCH_DATABASE_URL": fresh_database}
    run_switch("merchants", "create", "dup", env=env)
    result = run_switch("merchants", "create", "dup", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "already exists" in result.stderr
    assert "Traceback" not in result.stderr


def test_ledger_verify_passes_on_a_clean_ledger(fresh_database):
    result = run_switch("ledger", "verify", env={"SWITCH_DATABASE_URL": fresh_database})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all invariants hold" in result.stdout


def test_ledger_verify_fails_with_a_readable_report_on_an_unbalanced_transaction(fresh_database):
    env = {"SWITCH_DATABASE_URL": fresh_database}
    run_switch("migrate", env=env)
    _fetch(
        fresh_database,
        "INSERT INTO journal_transactions (id, merchant_id, payment_id, kind, operation_id, created)"
        " VALUES ('jtx_broken', 'm', NULL, 'sale', 'op1', 0)",
    )
    _fetch(
        fresh_database,
        "INSERT INTO journal_entries (transaction_id, account, currency, phase, amount)"
        " VALUES ('jtx_broken', 'provider_receivable:sandbox', 'EUR', 'posted', 100)",
    )
    result = run_switch("ledger", "verify", env=env)
    assert result.returncode == 1
    assert "FAIL balanced" in result.stdout
    assert "jtx_broken" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SWITCH_PORT": "eighty"}, "SWITCH_PORT must be an integer"),
        ({"SWITCH_WORKERS": "0"}, "SWITCH_WORKERS must be between"),
        ({"SWITCH_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing"}, "cannot connect to PostgreSQL"),
    ],
)
def test_configuration_and_connection_errors_are_one_line(env, message):
    result = run_switch("merchants", "list", env=env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serving_several_workers_without_redis_is_refused_in_one_line():
    result = run_switch("serve", "--workers", "4")
    assert result.returncode == 2
    assert "SWITCH_REDIS_URL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_broken_providers_file_is_one_line_error(tmp_path):
    broken = tmp_path / "providers.toml"
    broken.write_text('[accounts.stripe]\nprovider = "stripe"\napi_key = "env:NOT_SET_ANYWHERE"\n')
    result = run_switch("serve", env={"SWITCH_PROVIDERS_FILE": str(broken)})
    assert result.returncode == 2
    assert "NOT_SET_ANYWHERE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_commands_are_usage_errors():
    result = run_switch("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_zero_config_serve_starts_embedded_postgres_and_a_demo_merchant(tmp_path):
    port = _free_port()
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    env["SWITCH_DATA_DIR"] = str(data_dir)
    server = subprocess.Popen(
        [*SWITCH, "serve", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        lines = []
        deadline = time.monotonic() + 90
        key = None
        while time.monotonic() < deadline and key is None:
            line = server.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("demo merchant key:"):
                key = line.split()[-1]
        assert key, "".join(lines)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        body = json.dumps(
            {
                "amount": 1250,
                "currency": "EUR",
                "payment_method": {
                    "type": "card",
                    "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
                },
            }
        ).encode()
        request = urllib.request.Request(
            f"{base}/v1/payments",
            data=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
            assert json.loads(response.read())["status"] == "captured"
        # Other commands find the running embedded server through the same data directory.
        listed = run_switch("merchants", "list", env={"SWITCH_DATA_DIR": str(data_dir)})
        assert listed.returncode == 0, listed.stderr
        assert "demo" in listed.stdout
        verified = run_switch("ledger", "verify", env={"SWITCH_DATA_DIR": str(data_dir)})
        assert verified.returncode == 0, verified.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode == 0
    # The embedded PostgreSQL that serve started stops with it.
    postmaster = data_dir / "pg" / "postmaster.pid"
    for _ in range(100):
        if not postmaster.exists():
            break
        time.sleep(0.1)
    assert not postmaster.exists(), "the embedded PostgreSQL kept running after switch serve exited"


def test_simulator_command_serves_the_admin_endpoint():
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    server = subprocess.Popen(
        [*SWITCH, "simulator", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/config", timeout=2) as response:
                    assert response.status == 200
                    assert "providers" in json.loads(response.read())
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the simulator did not answer")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_simulator_with_a_missing_config_file_is_one_line_error(tmp_path):
    result = run_switch("simulator", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "cannot load simulator config" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_recovery_list_names_unresolved_intents_and_exits_1_for_stuck_ones(fresh_database):
    env = {"SWITCH_DATABASE_URL": fresh_database}
    run_switch("migrate", env=env)
    clean = run_switch("recovery", "list", env=env)
    assert clean.returncode == 0, clean.stderr
    assert "no unresolved intents" in clean.stdout
    _fetch(
        fresh_database,
        "INSERT INTO merchants (id, name, key_hash, key_prefix, created) VALUES ('mer_1', 'm', '\\x00', 'sk_', 0)",
    )
    _fetch(
        fresh_database,
        "INSERT INTO payment_attempts (id, payment_id, merchant_id, provider, amount, currency, status, request,"
        " created, checks, next_check) VALUES ('att_open', 'pay_1', 'mer_1', 'stripe', 1250, 'EUR', 'unknown',"
        " '{}', 0, 3, 0)",
    )
    waiting = run_switch("recovery", "list", env=env)
    assert waiting.returncode == 0, waiting.stderr
    assert "att_open" in waiting.stdout and "1250 EUR" in waiting.stdout
    assert "no stuck intents" in run_switch("recovery", "list", "--stuck", env=env).stdout
    _fetch(fresh_database, "UPDATE payment_attempts SET stuck_since = 1 WHERE id = 'att_open'")
    stuck = run_switch("recovery", "list", "--stuck", env=env)
    assert stuck.returncode == 1
    assert "att_open" in stuck.stdout and stuck.stdout.rstrip().endswith("yes")
