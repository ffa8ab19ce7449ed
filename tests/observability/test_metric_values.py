"""Metric values move as a scripted sequence of payments says they should (through the API)."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess

import pytest

from switch.metrics import currency_label
from tests.api.helpers import create
from tests.observability.processes import DECLINE, sample_value

AUTH = "switch_authorizations_total"


async def _scrape(client) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_scripted_payments_move_authorizations_latency_replays_and_ledger_batches(client, merchant):
    before = await _scrape(client)
    key = secrets.token_hex(8)
    assert (await create(client, merchant, idempotency_key=key)).status_code == 201
    assert (await create(client, merchant)).status_code == 201
    assert (await create(client, merchant, number=DECLINE)).status_code == 201
    replay = await create(client, merchant, idempotency_key=key)
    assert replay.status_code == 201
    mismatch = await create(client, merchant, idempotency_key=key, amount=999)
    assert mismatch.status_code == 422
    after = await _scrape(client)

    def moved(name: str, **labels: str) -> float:
        return sample_value(after, name, **labels) - sample_value(before, name, **labels)

    labels = {"account": "sandbox", "method": "card", "currency": "EUR"}
    assert moved(AUTH, **labels, status="captured") == 2
    assert moved(AUTH, **labels, status="declined") == 1
    assert moved(AUTH) == 3  # the replay and the refused request are not authorizations
    assert moved("switch_authorization_duration_seconds_count") == 3
    assert moved("switch_authorization_duration_seconds_bucket", le="10.0") == 3
    assert moved("switch_idempotent_replays_total") == 1
    assert moved("switch_idempotency_conflicts_total", kind="body_mismatch") == 1
    assert moved("switch_payments_total", status="captured", provider="sandbox") == 2
    assert moved("switch_provider_call_seconds_count", provider="sandbox", flow="authorize") == 3
    assert moved("switch_ledger_batch_ops_count") >= 3  # intents and outcomes, however they were grouped
    assert moved("switch_ledger_batch_ops_sum") >= 6
    assert moved("switch_ledger_batch_seconds_count") == moved("switch_ledger_batch_ops_count")
    assert moved("switch_ledger_batches_failed_total") == 0


async def test_labels_carry_no_payment_id_key_or_card_data(client, merchant):
    response = await create(client, merchant, idempotency_key="obs-key-" + secrets.token_hex(4))
    payment = response.json()
    text = await _scrape(client)
    for secret in (
        payment["id"],
        merchant.key,
        "obs-key-",
        "4242424242424242",
        payment["payment_method"]["card"]["token"],
    ):
        assert secret not in text


def test_currency_label_is_bounded_to_iso_4217():
    assert currency_label("EUR") == "EUR"
    assert currency_label("JPY") == "JPY"
    assert currency_label("eur") == "other"
    assert currency_label("<script>") == "other"
    assert currency_label("XYZ") == "other"


async def test_process_metrics_are_exposed(client):
    text = await _scrape(client)
    assert sample_value(text, "process_resident_memory_bytes") > 0
    assert re.search(r"^process_cpu_seconds_total \S+$", text, re.M)


async def test_promtool_check_metrics_passes_on_the_exposition(client, merchant):
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian package 'prometheus': apt-get install -y prometheus)")
    await create(client, merchant)
    text = await _scrape(client)
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
