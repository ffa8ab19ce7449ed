"""``switch routing show|set|versions|rollback``: a merchant's routing config from the command line.

Each command runs as a real ``switch`` process against a fresh PostgreSQL database; failures are
one line on stderr with a non-zero exit code, never a traceback. A ``set`` is announced on Redis,
and a running app drops its cached config and routes with the new version.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from switch.config import Settings
from switch.stores.documents import CHANNEL
from tests.cli.test_cli import SWITCH, run_switch
from tests.conftest import running_app, temporary_database

PROVIDERS = """
[accounts.acq-a]
provider = "stripe"
api_key = "sk_test_a"
base_url = "http://127.0.0.1:9/stripe"

[accounts.acq-b]
provider = "adyen"
api_key = "adyen_b"
account_id = "ShopB"
base_url = "http://127.0.0.1:9/adyen"
"""

CONFIG = {
    "rules": [
        {
            "name": "eur-cards",
            "when": {"currency": ["EUR"], "payment_method": ["card"]},
            "strategy": "cheapest",
            "candidates": ["acq-a", "acq-b"],
        }
    ],
    "default": {"strategy": "priority", "candidates": ["acq-b", "sandbox"]},
    "cascade": {"max_attempts": 2, "soft_decline_codes": ["do_not_honor"], "deadline_ms": 20000},
}


@pytest.fixture
def env(server_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh database and a providers file; no Redis."""
    providers = tmp_path / "providers.toml"
    providers.write_text(PROVIDERS)
    with temporary_database(server_url, "switch_routing_cli_") as url:
        yield {"SWITCH_DATABASE_URL": url, "SWITCH_PROVIDERS_FILE": str(providers)}


def _merchant(env: dict[str, str], *accounts: str) -> tuple[str, str]:
    """Create a merchant routed to ``accounts``; return its name and id."""
    name = "shop-" + secrets.token_hex(3)
    created = run_switch("merchants", "create", name, env=env)
    assert created.returncode == 0, created.stderr
    merchant_id = next(line.split()[-1] for line in created.stdout.splitlines() if line.startswith("merchant:"))
    if accounts:
        routed = run_switch("merchants", "providers", name, *accounts, env=env)
        assert routed.returncode == 0, routed.stderr
    return name, merchant_id


def _write(tmp_path: Path, document: dict[str, Any] | str) -> str:
    path = tmp_path / f"routing-{secrets.token_hex(3)}.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def _one_line_error(result, code: int | None = None) -> str:
    assert result.returncode != 0, result.stdout
    if code is not None:
        assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _heads(url: str, merchant_id: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetch(
                "SELECT active_version, canary_version, canary_percent FROM merchant_document_heads"
                " WHERE merchant_id = $1 AND kind = 'routing'",
                merchant_id,
            )
        finally:
            await connection.close()

    return asyncio.run(run())


def _shown_document(stdout: str) -> dict[str, Any]:
    """The JSON document ``routing show`` prints after its one-line header."""
    return json.loads(stdout[stdout.index("\n{") + 1 : stdout.rindex("}") + 1].split("\ncanary:")[0])


def test_set_show_versions_and_rollback(env, tmp_path) -> None:
    name, merchant_id = _merchant(env, "acq-a", "acq-b", "sandbox")

    before = run_switch("routing", "show", name, env=env)
    assert before.returncode == 0, before.stderr
    assert "version 0" in before.stdout.splitlines()[0]
    implied = _shown_document(before.stdout)
    assert implied["default"] == {"strategy": "priority", "candidates": ["acq-a", "acq-b", "sandbox"]}
    empty = run_switch("routing", "versions", name, env=env)
    assert empty.returncode == 0 and "has no routing config" in empty.stdout

    first = run_switch("routing", "set", name, _write(tmp_path, CONFIG), env=env)
    assert first.returncode == 0, first.stderr
    assert f"stored routing config version 1 for {merchant_id}" in first.stdout
    assert "active" in first.stdout.splitlines()[0]
    assert "No SWITCH_REDIS_URL" in first.stdout

    second_config = {**CONFIG, "default": {"strategy": "priority", "candidates": ["sandbox"]}}
    second = run_switch("routing", "set", merchant_id, _write(tmp_path, second_config), env=env)  # by id too
    assert second.returncode == 0, second.stderr
    assert "version 2" in second.stdout

    shown = run_switch("routing", "show", name, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "version 2 active" in shown.stdout.splitlines()[0]
    document = _shown_document(shown.stdout)
    assert document["default"]["candidates"] == ["sandbox"]
    assert document["rules"][0]["name"] == "eur-cards"

    versions = run_switch("routing", "versions", name, env=env)
    assert versions.returncode == 0, versions.stderr
    rows = [line.split() for line in versions.stdout.splitlines()[1:]]
    assert [(row[0], row[1]) for row in rows] == [("2", "active"), ("1", "-")]

    rolled = run_switch("routing", "rollback", name, "1", env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert "version 1 is active again" in rolled.stdout
    assert [tuple(row) for row in _heads(env["SWITCH_DATABASE_URL"], merchant_id)] == [(1, None, None)]
    shown = run_switch("routing", "show", name, env=env)
    assert "version 1 active" in shown.stdout.splitlines()[0]
    assert _shown_document(shown.stdout)["default"]["candidates"] == ["acq-b", "sandbox"]
    # A rollback creates no version.
    assert len(run_switch("routing", "versions", name, env=env).stdout.splitlines()) == 3


def test_a_partial_rollout_is_stored_as_a_canary(env, tmp_path) -> None:
    name, merchant_id = _merchant(env, "acq-a", "acq-b", "sandbox")
    assert run_switch("routing", "set", name, _write(tmp_path, CONFIG), env=env).returncode == 0
    canary = {**CONFIG, "rollout": {"percent": 10, "sticky": "card"}}
    result = run_switch("routing", "set", name, _write(tmp_path, canary), env=env)
    assert result.returncode == 0, result.stderr
    assert "version 2" in result.stdout and "canary at 10% of traffic (sticky per card)" in result.stdout
    assert [tuple(row) for row in _heads(env["SWITCH_DATABASE_URL"], merchant_id)] == [(1, 2, 10)]
    shown = run_switch("routing", "show", name, env=env)
    assert "version 1 active" in shown.stdout and "canary: version 2 at 10% of traffic" in shown.stdout
    versions = run_switch("routing", "versions", name, env=env).stdout.splitlines()
    assert versions[1].split()[:3] == ["2", "canary", "10%"]


def test_a_file_that_is_not_json_is_one_line(env, tmp_path) -> None:
    name, merchant_id = _merchant(env, "acq-a", "sandbox")
    path = _write(tmp_path, '{"default": {"strategy": ')
    line = _one_line_error(run_switch("routing", "set", name, path, env=env), 2)
    assert "is not valid JSON" in line and path in line
    missing = _one_line_error(run_switch("routing", "set", name, str(tmp_path / "nope.json"), env=env), 2)
    assert "cannot read" in missing
    assert _heads(env["SWITCH_DATABASE_URL"], merchant_id) == []


@pytest.mark.parametrize(
    ("document", "param", "says"),
    [
        (
            {"default": {"strategy": "fastest", "candidates": ["acq-a"]}},
            "default.strategy",
            "is not one of cheapest, reliable, weighted, priority",
        ),
        (
            {
                "rules": [{"name": "eu", "strategy": "cheapest", "candidates": ["acq-a", "acq-b"]}],
                "default": {"strategy": "priority", "candidates": ["sandbox"]},
            },
            # acq-b is configured on the switch but is not one of this merchant's accounts.
            "rules.0.candidates.1",
            "not one of the merchant's accounts",
        ),
        (
            {
                "default": {"strategy": "priority", "candidates": ["acq-a"]},
                "cascade": {"soft_decline_codes": ["insufficient_funds"]},
            },
            "cascade.soft_decline_codes.0",
            "cannot cascade",
        ),
        (
            {"rules": [{"name": "x", "strategy": "priority", "candidates": ["acq-a"], "when": {"colour": ["red"]}}]},
            "rules.0.when.colour",
            "Object contains unknown field",
        ),
    ],
)
def test_an_invalid_document_names_the_dotted_param(env, tmp_path, document, param, says) -> None:
    name, merchant_id = _merchant(env, "acq-a", "sandbox")
    line = _one_line_error(run_switch("routing", "set", name, _write(tmp_path, document), env=env), 2)
    assert f"at {param}:" in line, line
    assert says in line, line
    assert _heads(env["SWITCH_DATABASE_URL"], merchant_id) == []


def test_an_unknown_merchant_is_one_line_for_every_command(env, tmp_path) -> None:
    path = _write(tmp_path, CONFIG)
    for args in (("show", "ghost"), ("set", "ghost", path), ("versions", "ghost"), ("rollback", "ghost", "1")):
        line = _one_line_error(run_switch("routing", *args, env=env), 1)
        assert "no merchant with id or name 'ghost'" in line, (args, line)


def test_an_unknown_version_is_one_line_and_changes_nothing(env, tmp_path) -> None:
    name, merchant_id = _merchant(env, "acq-a", "acq-b", "sandbox")
    none_yet = _one_line_error(run_switch("routing", "rollback", name, "1", env=env), 1)
    assert "has no routing config version 1 (none stored)" in none_yet
    assert run_switch("routing", "set", name, _write(tmp_path, CONFIG), env=env).returncode == 0
    line = _one_line_error(run_switch("routing", "rollback", name, "9", env=env), 1)
    assert "has no routing config version 9 (kept: 1)" in line
    assert "VERSION must be 1 or more" in _one_line_error(run_switch("routing", "rollback", name, "0", env=env), 2)
    usage = run_switch("routing", "rollback", name, "two", env=env)  # argparse: usage line, then the error
    assert usage.returncode == 2 and "argument VERSION: invalid int value: 'two'" in usage.stderr
    assert [tuple(row) for row in _heads(env["SWITCH_DATABASE_URL"], merchant_id)] == [(1, None, None)]


def test_set_and_rollback_are_announced_on_redis(env, tmp_path, redis_url) -> None:
    name, merchant_id = _merchant(env, "acq-a", "acq-b", "sandbox")
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL)
    try:
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        with_redis = {**env, "SWITCH_REDIS_URL": redis_url}
        result = run_switch("routing", "set", name, _write(tmp_path, CONFIG), env=with_redis)
        assert result.returncode == 0, result.stderr
        assert "Announced on Redis" in result.stdout
        assert _next_message_for(pubsub, merchant_id) == f"routing:{merchant_id}"
        assert run_switch("routing", "rollback", name, "1", env=with_redis).returncode == 0
        assert _next_message_for(pubsub, merchant_id) == f"routing:{merchant_id}"
    finally:
        pubsub.close()
        client.close()


def _next_message_for(pubsub, merchant_id: str, timeout_s: float = 5.0) -> str | None:
    """The next message on the channel about this merchant (other tests share the Redis)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            data = bytes(message["data"]).decode()
            if data.endswith(merchant_id):
                return data
    return None


async def test_a_running_app_routes_with_a_config_set_from_the_cli_within_a_second(env, tmp_path, redis_url) -> None:
    env = {**env, "SWITCH_REDIS_URL": redis_url}
    settings = Settings(
        database_url=env["SWITCH_DATABASE_URL"], providers_file=env["SWITCH_PROVIDERS_FILE"], redis_url=redis_url
    )
    async with running_app(settings) as app:
        documents = app.state.router.documents
        await asyncio.wait_for(documents.subscribed.wait(), 5)
        name, merchant_id = await asyncio.to_thread(_merchant, env, "acq-a", "acq-b", "sandbox")
        assert (await documents.head(merchant_id)).active_version == 0  # now cached by this worker
        code, _, stderr = await _run_async("routing", "set", name, _write(tmp_path, CONFIG), env=env)
        assert code == 0, stderr
        set_at = time.monotonic()
        while (await documents.head(merchant_id)).active_version != 1:
            assert time.monotonic() - set_at < 1.0, "the worker still routes with its cached config"
            await asyncio.sleep(0.01)
        head = await documents.head(merchant_id)
        assert head.active is not None and head.active.document.rules[0].name == "eur-cards"


async def _run_async(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    environment.update(env)
    process = await asyncio.create_subprocess_exec(
        *SWITCH, *args, env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
