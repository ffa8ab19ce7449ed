"""Each simulator knob, proven: latency, approval mix, timeouts, 5xx/429 bursts, outages, webhooks."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import time

import aiohttp
import msgspec
import pytest

from adapters.base import Outcome
from adapters.simulator import Latency, SimulatorConfig, SimulatorServer, load_config
from adapters.simulator.knobs import ProviderKnobs
from tests.adapters.conftest import Admin, ProviderCase, Receiver, _stripe

STRIPE = ProviderCase("stripe", _stripe, "EUR", 1250, {})


def test_fixed_latency_samples_the_configured_value() -> None:
    assert Latency(dist="fixed", ms=25).sample(random.Random(1)) == pytest.approx(0.025)


def test_uniform_latency_stays_within_bounds() -> None:
    rng = random.Random(2)
    draws = [Latency(dist="uniform", low_ms=10, high_ms=20).sample(rng) for _ in range(500)]
    assert min(draws) >= 0.010 and max(draws) <= 0.020


def test_lognormal_latency_centres_on_the_median_and_has_a_tail() -> None:
    rng = random.Random(3)
    knob = Latency(dist="lognormal", median_ms=40, sigma=0.5, tail_prob=0.02, tail_ms=3000)
    draws = [knob.sample(rng) for _ in range(5000)]
    body = [d for d in draws if d != 3.0]
    assert statistics.median(body) == pytest.approx(0.040, rel=0.1)
    assert 0.01 < draws.count(3.0) / len(draws) < 0.03


async def test_latency_knob_delays_answers(simulator, admin: Admin) -> None:
    await admin.knobs("stripe", latency={"dist": "fixed", "ms": 150})
    adapter = STRIPE.adapter(simulator)
    try:
        started = time.monotonic()
        result = await adapter.authorize(STRIPE.authorize_request())
        assert time.monotonic() - started >= 0.15
    finally:
        await adapter.close()
    assert result.outcome is Outcome.APPROVED


async def test_approval_rate_and_decline_mix_shape_the_outcomes(simulator, admin: Admin) -> None:
    await admin.knobs("stripe", approval_rate=0.5, decline_mix={"insufficient_funds": 3, "stolen_card": 1})
    sim = simulator.sim
    draws = [sim.decide("stripe", "generic_decline") for _ in range(4000)]
    approved = draws.count(None) / len(draws)
    assert 0.45 < approved < 0.55
    declines = [d for d in draws if d is not None]
    assert set(declines) == {"insufficient_funds", "stolen_card"}
    assert 2.5 < declines.count("insufficient_funds") / declines.count("stolen_card") < 3.6


async def test_503_burst_is_retried_through_with_the_idempotency_key(simulator, admin: Admin) -> None:
    await admin.burst("stripe", 503, 2, retry_after="0")
    adapter = STRIPE.adapter(simulator)
    try:
        result = await adapter.authorize(STRIPE.authorize_request())
    finally:
        await adapter.close()
    stats = (await admin.stats())["providers"]["stripe"]
    assert result.outcome is Outcome.APPROVED
    assert stats["burst_503"] == 2
    assert stats["requests"] == 3


async def test_429_burst_longer_than_the_retries_is_technical(simulator, admin: Admin) -> None:
    await admin.burst("stripe", 429, 10, retry_after="0")
    adapter = STRIPE.adapter(simulator)
    try:
        result = await adapter.authorize(STRIPE.authorize_request())
    finally:
        await adapter.close()
    assert result.outcome is Outcome.TECHNICAL
    assert result.raw_status == "http_429"
    assert (await admin.stats())["providers"]["stripe"]["burst_429"] == 3  # one try plus two retries


async def test_error_rate_knob_answers_5xx_without_processing(simulator, admin: Admin) -> None:
    await admin.knobs("stripe", error_rate=1.0, error_status=502)
    adapter = STRIPE.adapter(simulator)
    try:
        result = await adapter.authorize(STRIPE.authorize_request())
    finally:
        await adapter.close()
    # The simulator processed nothing, but a 502 cannot prove that to the caller: unknown.
    assert result.outcome is Outcome.UNKNOWN
    assert result.raw_status == "http_502"
    assert simulator.sim.providers["stripe"].intents == {}
    assert simulator.sim.books.movements == []


async def test_rate_limit_rate_knob_answers_429(simulator, admin: Admin) -> None:
    await admin.knobs("stripe", rate_limit_rate=1.0)
    adapter = STRIPE.adapter(simulator)
    try:
        result = await adapter.authorize(STRIPE.authorize_request())
    finally:
        await adapter.close()
    assert result.raw_status == "http_429"
    assert (await admin.stats())["providers"]["stripe"]["random_429"] >= 1


async def test_outage_window_fails_then_recovers(simulator, admin: Admin) -> None:
    await admin.knobs("stripe", outages=[{"start_in_s": 0, "duration_s": 0.6}])
    adapter = STRIPE.adapter(simulator, total_timeout=0.3)
    try:
        during = await adapter.authorize(STRIPE.authorize_request())
        await asyncio.sleep(0.7)
        after = await adapter.authorize(STRIPE.authorize_request())
    finally:
        await adapter.close()
    # A 503 from an outage is ambiguous to the caller (a gateway may hide a processed request).
    assert during.outcome is Outcome.UNKNOWN
    assert after.outcome is Outcome.APPROVED


async def test_outage_that_drops_connections_is_not_an_approval(simulator, admin: Admin) -> None:
    await admin.knobs("stripe", outages=[{"start_in_s": 0, "duration_s": 5, "status": 0}])
    adapter = STRIPE.adapter(simulator, total_timeout=0.5)
    try:
        result = await adapter.authorize(STRIPE.authorize_request())
    finally:
        await adapter.close()
    # A dropped connection may have carried the request: technical or unknown, never approved.
    assert result.outcome in (Outcome.TECHNICAL, Outcome.UNKNOWN)


async def test_timeout_knob_then_idempotent_retry_replays_the_stored_answer(simulator, admin: Admin) -> None:
    adapter = STRIPE.adapter(simulator, total_timeout=0.3)
    request = STRIPE.authorize_request()
    try:
        await admin.knobs("stripe", timeout_rate=1.0, timeout_ms=1000)
        first = await adapter.authorize(request)
        await admin.knobs("stripe", timeout_rate=0.0)
        second = await adapter.authorize(request)
    finally:
        await adapter.close()
    assert first.outcome is Outcome.UNKNOWN
    assert second.outcome is Outcome.APPROVED
    assert len(simulator.sim.providers["stripe"].intents) == 1
    assert (await admin.stats())["providers"]["stripe"]["idempotent_replays"] == 1


async def test_delayed_webhook_arrives_after_the_delay(simulator, admin: Admin, receiver: Receiver) -> None:
    await admin.knobs("stripe", webhook={"url": receiver.url("stripe"), "delay_ms": 300})
    adapter = STRIPE.adapter(simulator)
    try:
        sent_at = asyncio.get_running_loop().time()
        await adapter.authorize(STRIPE.authorize_request())
        deliveries = await receiver.wait_for("stripe")
    finally:
        await adapter.close()
    assert deliveries[0][2] - sent_at >= 0.3
    assert adapter.parse_webhook(deliveries[0][0], deliveries[0][1])[0].outcome is Outcome.APPROVED


async def test_disabled_webhooks_are_not_sent(simulator, admin: Admin, receiver: Receiver) -> None:
    await admin.knobs("stripe", webhook={"url": receiver.url("stripe"), "enabled": False})
    adapter = STRIPE.adapter(simulator)
    try:
        await adapter.authorize(STRIPE.authorize_request())
        await asyncio.sleep(0.2)
    finally:
        await adapter.close()
    assert receiver.received.get("stripe") is None


async def test_unknown_knob_is_rejected_by_the_admin_api(simulator, admin: Admin, admin_session) -> None:
    async with admin_session.patch(f"{simulator.base_url}/_sim/providers/stripe", json={"aproval": 1}) as r:
        assert r.status == 400


def test_config_file_json_and_toml_set_the_knobs(tmp_path) -> None:
    json_path = tmp_path / "knobs.json"
    json_path.write_text(json.dumps({"seed": 5, "providers": {"adyen": {"approval_rate": 0.25}}}))
    toml_path = tmp_path / "knobs.toml"
    toml_path.write_text("seed = 5\n[providers.paypal]\ntimeout_rate = 0.5\n[providers.paypal.latency]\nms = 7\n")
    assert load_config(json_path).providers["adyen"].approval_rate == 0.25
    toml = load_config(toml_path)
    assert toml.providers["paypal"].timeout_rate == 0.5
    assert toml.providers["paypal"].latency.ms == 7
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"providers": {"x": {"nope": 1}}}, SimulatorConfig)


async def test_server_started_from_a_config_file_applies_it(tmp_path) -> None:
    path = tmp_path / "knobs.json"
    path.write_text(json.dumps({"providers": {"stripe": {"approval_rate": 0.0, "decline_mix": {"lost_card": 1}}}}))
    async with SimulatorServer(config_path=str(path)) as server:
        adapter = STRIPE.adapter(server)
        try:
            result = await adapter.authorize(STRIPE.authorize_request())
        finally:
            await adapter.close()
    assert (result.outcome, result.code) == (Outcome.DECLINED_HARD, "lost_card")
    assert ProviderKnobs().approval_rate == 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_python_dash_m_runs_a_standalone_simulator() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.simulator", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/_sim/health") as r:
                        body = await r.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("simulator did not start")
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert {"stripe", "adyen", "paypal"} <= set(body["providers"])
