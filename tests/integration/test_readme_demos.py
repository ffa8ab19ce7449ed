"""The README's demos of smart routing and of risk and compliance, as tests, so the two cannot drift.

``examples/providers.demo.toml`` is loaded with its simulator URL pointed at an in-process
:class:`~adapters.simulator.SimulatorServer`; the merchant gets its accounts and
``examples/routing.demo.json`` through the ``switch`` command, as the README does; then every
payment the README shows is sent and the route, cost, risk decision and SCA outcome it claims are
asserted, and what the simulated provider performed is checked on its own books.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from litestar import Litestar

from adapters.simulator import SimulatorServer
from switch.config import Settings
from switch.merchants import create_merchant
from tests.api.helpers import card, fresh_card_number
from tests.conftest import MerchantKey, running_app, temporary_database

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
README_SIMULATOR = "http://127.0.0.1:8420"
ACCOUNTS = ("adyen-eu", "stripe-eu", "stripe-jp", "adyen-jp", "xendit", "midtrans", "adyen-br", "sandbox")
FRENCH_CARD = "4000002500000003"  # BIN table: FR
GERMAN_CARD = "4000002760000016"  # BIN table: DE
BRAZILIAN_CARD = "4000000760000002"  # BIN table: BR
JAPANESE_CARD = "4000003920000003"  # BIN table: JP


@pytest.fixture(scope="module")
def demo_database(server_url: str) -> Iterator[str]:
    with temporary_database(server_url, "switch_readme_") as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(port=0) as server:
        yield server


@pytest.fixture(scope="module")
def providers_file(sim: SimulatorServer, tmp_path_factory) -> str:
    text = (EXAMPLES / "providers.demo.toml").read_text()
    assert text.count(README_SIMULATOR) == 7, "every demo account is served by the simulator"
    path = tmp_path_factory.mktemp("readme") / "providers.demo.toml"
    path.write_text(text.replace(README_SIMULATOR, sim.base_url))
    return str(path)


@pytest_asyncio.fixture(scope="module")
async def switch_app(demo_database: str, providers_file: str) -> AsyncIterator[Litestar]:
    async with running_app(Settings(database_url=demo_database, providers_file=providers_file)) as app:
        yield app


@pytest_asyncio.fixture(scope="module")
async def client(switch_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=switch_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://switch.test", timeout=30) as http:
        yield http


def _switch(*args: str, env: dict[str, str]) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "-m", "switch.cli", *args], capture_output=True, text=True, env=environment, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest_asyncio.fixture(scope="module")
async def shop(switch_app: Litestar, demo_database: str, providers_file: str) -> MerchantKey:
    """The README's routing merchant: the demo accounts, then the demo config, both by the CLI."""
    created, key = await create_merchant(switch_app.state.pool, "shop-demo-" + secrets.token_hex(3))
    env = {"SWITCH_DATABASE_URL": demo_database, "SWITCH_PROVIDERS_FILE": providers_file}
    _switch("merchants", "providers", created.name, *ACCOUNTS, env=env)
    stored = _switch("routing", "set", created.name, str(EXAMPLES / "routing.demo.json"), env=env)
    assert "stored routing config version 1" in stored and ": active" in stored
    return MerchantKey(created.id, key)


@pytest_asyncio.fixture
async def sandbox_merchant(switch_app: Litestar) -> MerchantKey:
    """The README's risk merchant: a fresh one on the sandbox (3-D Secure is the sandbox's)."""
    created, key = await create_merchant(switch_app.state.pool, "risk-demo-" + secrets.token_hex(3))
    return MerchantKey(created.id, key)


async def _pay(client: httpx.AsyncClient, merchant: MerchantKey, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/payments", json=body, headers=merchant.headers)
    assert response.status_code == 201, response.text
    return response.json()


def _card_body(amount: int, currency: str, number: str, **extra: Any) -> dict[str, Any]:
    return {"amount": amount, "currency": currency, "payment_method": card(number), **extra}


def _performed(sim: SimulatorServer, payment_id: str) -> list[tuple[str, str]]:
    return [(m.provider, m.kind) for m in sim.sim.books.for_payment(payment_id)]


# --- smart routing --------------------------------------------------------------------------------


def test_the_demo_config_is_the_one_the_readme_describes() -> None:
    document = json.loads((EXAMPLES / "routing.demo.json").read_text())
    rules = {rule["name"]: rule for rule in document["rules"]}
    assert rules["eur-cards"]["strategy"] == "cheapest"
    assert rules["eur-cards"]["candidates"] == ["adyen-eu", "stripe-eu"]
    assert rules["jpy"]["when"] == {"currency": ["JPY"]}
    assert rules["sea-wallets"]["when"] == {"payment_method": ["gopay", "grabpay"]}
    assert rules["br-cards-local"]["when"] == {"payment_method": ["card"], "card_country": ["BR"]}


async def test_a_eur_card_goes_to_the_cheapest_eu_acquirer_with_its_cost_and_the_runner_up(client, shop, sim) -> None:
    payment = await _pay(client, shop, _card_body(8900, "EUR", FRENCH_CARD))
    assert payment["status"] == "captured", payment
    assert payment["provider"] == "adyen-eu"
    routing = payment["routing"]
    assert (routing["rule"], routing["strategy"], routing["version"]) == ("eur-cards", "cheapest", 1)
    # adyen-eu: 1.20 % + 0.11 = 1.18 EUR; stripe-eu: 1.50 % + 0.25 = 1.59 EUR (both EEA, no FX).
    assert routing["cost"] == {"account": "adyen-eu", "fee": 118, "fx_cost": 0}
    assert routing["runner_up"] == {"account": "stripe-eu", "fee": 159, "fx_cost": 0}
    assert [attempt["provider"] for attempt in routing["attempts"]] == ["adyen-eu"]
    assert _performed(sim, payment["id"]) == [("adyen", "authorize")]


async def test_the_dry_run_explains_the_same_plan_and_moves_no_money(client, shop, sim) -> None:
    response = await client.post(
        "/v1/routing/simulate", json=_card_body(8900, "EUR", FRENCH_CARD), headers=shop.headers
    )
    assert response.status_code == 200, response.text
    plan = response.json()
    assert (plan["rule"], plan["strategy"], plan["version"], plan["plan"]) == (
        "eur-cards",
        "cheapest",
        1,
        ["adyen-eu", "stripe-eu"],
    )
    fees = {candidate["account"]: (candidate["fee"], candidate["score"]) for candidate in plan["candidates"]}
    assert fees == {"adyen-eu": (118, 8782), "stripe-eu": (159, 8741)}
    assert plan["facts"]["card_country"] == "FR"
    assert plan["cascade"]["soft_decline_codes"] == ["do_not_honor", "issuer_not_available"]


async def test_jpy_konbini_goes_to_the_konbini_account_and_a_jpy_card_to_the_cheaper_jpy_acquirer(
    client, shop, sim
) -> None:
    konbini = await _pay(
        client,
        shop,
        {"amount": 3000, "currency": "JPY", "payment_method": {"type": "konbini", "konbini": {}}},
    )
    assert konbini["status"] == "requires_action", konbini
    assert konbini["provider"] == "stripe-jp" and konbini["routing"]["rule"] == "jpy"
    assert konbini["next_action"]["method"] == "konbini"
    # adyen-jp takes no konbini, so it is not in the plan at all.
    assert konbini["routing"]["runner_up"] is None

    card_payment = await _pay(client, shop, _card_body(12000, "JPY", JAPANESE_CARD))
    assert card_payment["status"] == "captured", card_payment
    assert card_payment["provider"] == "adyen-jp"
    assert card_payment["routing"]["cost"] == {"account": "adyen-jp", "fee": 276, "fx_cost": 0}
    assert card_payment["routing"]["runner_up"] == {"account": "stripe-jp", "fee": 432, "fx_cost": 0}
    assert _performed(sim, card_payment["id"]) == [("adyen", "authorize")]


async def test_south_east_asian_wallets_go_to_midtrans_or_xendit(client, shop) -> None:
    wallet = {"return_url": "https://shop.example/return"}
    gopay = await _pay(
        client,
        shop,
        {
            "amount": 15_000_000,
            "currency": "IDR",
            "payment_method": {"type": "wallet", "wallet": {"type": "gopay", **wallet}},
        },
    )
    assert gopay["status"] == "requires_action", gopay
    assert (gopay["provider"], gopay["routing"]["rule"], gopay["routing"]["strategy"]) == (
        "midtrans",
        "sea-wallets",
        "reliable",
    )
    grabpay = await _pay(
        client,
        shop,
        {
            "amount": 49_900,
            "currency": "PHP",
            "payment_method": {"type": "wallet", "wallet": {"type": "grabpay", **wallet}},
        },
    )
    assert grabpay["status"] == "requires_action", grabpay
    assert (grabpay["provider"], grabpay["routing"]["rule"]) == ("xendit", "sea-wallets")


async def test_a_brazilian_card_goes_to_the_local_acquirer(client, shop, sim) -> None:
    payment = await _pay(client, shop, _card_body(5000, "EUR", BRAZILIAN_CARD))
    assert payment["status"] == "captured", payment
    assert payment["provider"] == "adyen-br"
    assert (payment["routing"]["rule"], payment["routing"]["strategy"]) == ("br-cards-local", "priority")
    assert payment["routing"]["runner_up"]["account"] == "adyen-eu"  # the cascade's second attempt
    assert _performed(sim, payment["id"]) == [("adyen", "authorize")]


# --- risk and compliance --------------------------------------------------------------------------


async def test_a_card_testing_attack_from_one_ip_is_declined_after_the_threshold(
    switch_app, client, sandbox_merchant
) -> None:
    sandbox = switch_app.state.adapters["sandbox"]
    ip = f"203.0.113.{secrets.randbelow(200) + 20}"
    answers = []
    for _ in range(5):
        before = sandbox.calls["authorize"]
        payment = await _pay(client, sandbox_merchant, _card_body(100, "EUR", fresh_card_number(), customer={"ip": ip}))
        answers.append((payment, sandbox.calls["authorize"] - before))
    assert [payment["status"] for payment, _ in answers] == ["captured"] * 3 + ["declined"] * 2
    blocked, provider_calls = answers[3]
    assert provider_calls == 0
    assert blocked["decline"]["code"] == "risk_blocked"
    assert blocked["risk"]["decision"] == "decline" and blocked["risk"]["score"] == 80
    assert blocked["risk"]["rules"] == [
        {"name": "platform.card_testing_ip", "action": "decline", "value": 4, "threshold": 3, "mode": "enforce"}
    ]
    assert blocked["routing"]["strategy"] == "none" and blocked["routing"]["attempts"] == []
    assert answers[4][0]["risk"]["rules"][0]["value"] == 5


async def test_a_sanctioned_name_goes_to_review_and_is_captured_once_approved(client, sandbox_merchant) -> None:
    body = _card_body(4200, "EUR", fresh_card_number())
    body["payment_method"]["card"]["holder_name"] = "Ivan Petrovich Korvalesh"  # synthetic list entry
    held = await _pay(client, sandbox_merchant, body)
    assert (held["status"], held["amount_captured"]) == ("in_review", 0)
    assert held["risk"]["decision"] == "review"
    assert [rule["name"] for rule in held["risk"]["rules"]] == ["platform.sanctions"]

    listed = await client.get("/v1/reviews?status=open", headers=sandbox_merchant.headers)
    assert listed.status_code == 200
    review = next(item for item in listed.json()["data"] if item["payment"] == held["id"])
    assert review["reason"] == "sanctions" and review["status"] == "open"

    approved = await client.post(
        f"/v1/reviews/{review['id']}/approve", json={"closed_by": "analyst-7"}, headers=sandbox_merchant.headers
    )
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["closed_by"]) == ("approved", "analyst-7")
    payment = (await client.get(f"/v1/payments/{held['id']}", headers=sandbox_merchant.headers)).json()
    assert (payment["status"], payment["amount_captured"]) == ("captured", 4200)


async def test_a_low_value_eea_payment_is_exempt_and_a_large_one_is_challenged_then_confirmed(
    switch_app, client, sandbox_merchant
) -> None:
    exempt = await _pay(client, sandbox_merchant, _card_body(2000, "EUR", GERMAN_CARD))
    assert exempt["status"] == "captured"
    assert exempt["risk"]["sca"] == {"exemption": "low_value", "reason": "low_value"}

    challenged = await _pay(client, sandbox_merchant, _card_body(25_000, "EUR", GERMAN_CARD))
    assert challenged["status"] == "requires_action", challenged
    assert challenged["risk"]["decision"] == "request_3ds"
    assert challenged["risk"]["sca"] == {"exemption": None, "reason": "above_exemption_limits"}
    url = challenged["next_action"]["url"]
    assert url.startswith("/sandbox/3ds/")
    completed = await client.post(url, json={"result": "succeeded"})
    assert completed.status_code == 200 and completed.json() == {"object": "sandbox_challenge", "completed": True}
    confirmed = await client.post(f"/v1/payments/{challenged['id']}/confirm", headers=sandbox_merchant.headers)
    assert confirmed.status_code == 200, confirmed.text
    settled = confirmed.json()
    assert (settled["status"], settled["amount_captured"]) == ("captured", 25_000)
    assert settled["risk"]["sca"]["authenticated"] is True
    reference = settled["provider_reference"]
    assert switch_app.state.adapters["sandbox"]._authorizations[reference].captured == 25_000


async def test_a_shadow_rule_is_reported_and_never_acts(client, sandbox_merchant) -> None:
    rules = {
        "rules": [
            {"name": "big-tickets", "kind": "amount", "threshold": 50000, "action": "review", "score": 40},
            {
                "name": "trial-small-eur",
                "kind": "amount",
                "threshold": 1000,
                "action": "decline",
                "score": 60,
                "mode": "shadow",
            },
        ]
    }
    stored = await client.put("/v1/risk/rules", json=rules, headers=sandbox_merchant.headers)
    assert stored.status_code == 200, stored.text
    payment = await _pay(client, sandbox_merchant, _card_body(1500, "EUR", fresh_card_number()))
    assert payment["status"] == "captured"
    assert payment["risk"]["decision"] == "approve"
    assert payment["risk"]["rules"] == [
        {"name": "trial-small-eur", "action": "decline", "value": 1500, "threshold": 1000, "mode": "shadow"}
    ]
