"""Fixtures for the adapter tests: one simulator per session, a webhook receiver, provider cases."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.base import AuthorizeRequest, CardData, Credentials, Outcome, ProviderAdapter
from adapters.simulator import SimulatorServer

VISA = CardData(number="4242424242424242", exp_month=12, exp_year=2030, cvc="123", holder_name="Ada Lovelace")
ADYEN_HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"


def authorize_request(*, amount: int, currency: str, method_type: str, **fields: Any) -> AuthorizeRequest:
    """A fresh authorization (new payment, attempt and idempotency ids) for an adapter test."""
    return AuthorizeRequest(
        payment_id=f"pay_{uuid.uuid4().hex[:8]}",
        attempt_id=f"att_{uuid.uuid4().hex[:8]}",
        idempotency_key=uuid.uuid4().hex,
        amount=amount,
        currency=currency,
        method_type=method_type,
        **fields,
    )


class Admin:
    """Drives the simulator's admin API over HTTP, as an operator or a load test would."""

    def __init__(self, server: SimulatorServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def knobs(self, provider: str, **patch: Any) -> dict[str, Any]:
        async with self.session.patch(f"{self.server.base_url}/_sim/providers/{provider}", json=patch) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def burst(self, provider: str, status: int, count: int, retry_after: str | None = None) -> None:
        body: dict[str, Any] = {"status": status, "count": count}
        if retry_after is not None:
            body["retry_after"] = retry_after
        async with self.session.post(f"{self.server.base_url}/_sim/providers/{provider}/bursts", json=body) as r:
            assert r.status == 200, await r.text()

    async def complete(self, provider: str, ref: str, **body: Any) -> dict[str, Any]:
        async with self.session.post(f"{self.server.base_url}/_sim/{provider}/payments/{ref}/complete", json=body) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def stats(self) -> dict[str, Any]:
        async with self.session.get(f"{self.server.base_url}/_sim/stats") as r:
            return await r.json()

    async def reset(self) -> None:
        async with self.session.put(f"{self.server.base_url}/_sim/config", json={"seed": 1234}) as r:
            assert r.status == 200
        async with self.session.post(f"{self.server.base_url}/_sim/reset") as r:
            assert r.status == 200


class Receiver:
    """A tiny webhook endpoint on 127.0.0.1 that records every delivery per provider."""

    def __init__(self) -> None:
        self.received: dict[str, list[tuple[dict[str, str], bytes, float]]] = {}
        self._events: dict[str, asyncio.Event] = {}
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        body = await request.read()
        loop = asyncio.get_running_loop()
        self.received.setdefault(provider, []).append((dict(request.headers), body, loop.time()))
        self._events.setdefault(provider, asyncio.Event()).set()
        return web.Response(text="[accepted]")

    def url(self, provider: str) -> str:
        return f"{self.base_url}/hooks/{provider}"

    async def wait_for(
        self, provider: str, count: int = 1, timeout: float = 5.0
    ) -> list[tuple[dict[str, str], bytes, float]]:
        async with asyncio.timeout(timeout):
            while len(self.received.get(provider, [])) < count:
                event = self._events.setdefault(provider, asyncio.Event())
                event.clear()
                await event.wait()
        return self.received[provider]

    def clear(self) -> None:
        self.received.clear()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{provider}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture(scope="session")
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(port=0) as server:
        yield server


@pytest.fixture(scope="session")
async def admin_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def admin(simulator: SimulatorServer, admin_session: aiohttp.ClientSession, receiver: Receiver) -> Admin:
    """The admin client, with the simulator and the receiver reset to defaults for each test."""
    a = Admin(simulator, admin_session)
    await a.reset()
    receiver.clear()
    return a


@dataclasses.dataclass(frozen=True)
class ProviderCase:
    """How the contract suite drives one adapter."""

    name: str
    factory: Callable[[str, float], ProviderAdapter]
    currency: str
    amount: int
    decline_map: dict[str, Outcome]
    method_type: str = "card"
    capture_outcome: Outcome = Outcome.APPROVED
    refund_outcome: Outcome = Outcome.APPROVED
    supports_manual_capture: bool = True
    supports_sync: bool = True
    # Whether sync can find an attempt whose answer was lost (no provider reference known).
    sync_by_attempt: bool = True
    details: dict[str, str] = dataclasses.field(default_factory=dict)
    # Asynchronous methods (e-wallet redirect, hosted checkout, direct debit) answer this at
    # authorization; the contract then completes the payment in the simulator and reads the
    # result back with sync.
    authorize_outcome: Outcome = Outcome.APPROVED
    # False when the provider authenticates callbacks with a static token that does not cover
    # the body (Xendit): a forged body with the genuine token cannot be detected there.
    signs_body: bool = True
    # Headers that carry the webhook credential (signature or token), stripped in the forgery test.
    credential_headers: tuple[str, ...] = ()

    @property
    def is_async(self) -> bool:
        return self.authorize_outcome is not Outcome.APPROVED

    def adapter(self, server: SimulatorServer, total_timeout: float = 5.0) -> ProviderAdapter:
        return self.factory(server.url_for(self.name), total_timeout)

    def authorize_request(self, *, capture: bool = True, amount: int | None = None) -> AuthorizeRequest:
        payment_id = f"pay_{uuid.uuid4().hex[:12]}"
        return AuthorizeRequest(
            payment_id=payment_id,
            attempt_id=f"att_{uuid.uuid4().hex[:12]}",
            idempotency_key=uuid.uuid4().hex,
            amount=self.amount if amount is None else amount,
            currency=self.currency,
            method_type=self.method_type,
            card=VISA if self.method_type == "card" else None,
            capture=capture,
            reference=f"order-{payment_id[-6:]}",
            customer_email="ada@example.com",
            customer_name="Ada Lovelace",
            customer_country="DE",
            customer_ip="203.0.113.7",
            return_url="https://shop.example/return",
            details=self.details,
        )


def _stripe(base_url: str, timeout: float) -> ProviderAdapter:
    from adapters.stripe import StripeAdapter

    return StripeAdapter(
        Credentials(api_key="sk_test_simulator", webhook_secret="whsec_simulator", base_url=base_url),
        total_timeout=timeout,
    )


def _adyen(base_url: str, timeout: float) -> ProviderAdapter:
    from adapters.adyen import AdyenAdapter

    return AdyenAdapter(
        Credentials(api_key="AQE_simulator", account_id="SwitchECOM", webhook_secret=ADYEN_HMAC_KEY, base_url=base_url),
        total_timeout=timeout,
    )


def _paypal(base_url: str, timeout: float) -> ProviderAdapter:
    from adapters.paypal import PayPalAdapter

    return PayPalAdapter(
        Credentials(
            api_key="paypal-client-secret",
            account_id="paypal-client-id",
            webhook_secret="paypal-simulator-secret",
            base_url=base_url,
            extra={"webhook_id": "WH-SIMULATOR"},
        ),
        total_timeout=timeout,
    )


def _cases() -> list[ProviderCase]:
    from adapters.adyen.transformers import REFUSAL_MAP
    from adapters.paypal.transformers import PROCESSOR_RESPONSE_MAP
    from adapters.stripe.transformers import DECLINE_MAP

    cases = [
        ProviderCase("stripe", _stripe, "EUR", 1250, dict(DECLINE_MAP)),
        ProviderCase(
            "adyen",
            _adyen,
            "EUR",
            1250,
            {code: outcome for code, (_, outcome) in REFUSAL_MAP.items()},
            # Adyen answers modifications with "received"; the notification carries the result.
            capture_outcome=Outcome.PENDING,
            refund_outcome=Outcome.PENDING,
            supports_sync=False,
        ),
        ProviderCase(
            "paypal",
            _paypal,
            "USD",
            1099,
            {c: o for c, o in PROCESSOR_RESPONSE_MAP.items() if o is not Outcome.APPROVED},
            sync_by_attempt=False,
        ),
    ]
    try:
        from tests.adapters.extra_cases import extra_cases
    except ImportError:
        return cases
    return cases + extra_cases()


CASES = _cases()


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> ProviderCase:
    return request.param
