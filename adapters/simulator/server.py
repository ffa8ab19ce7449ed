"""The simulator: one aiohttp server answering every provider under its own path prefix.

``/stripe/v1/...``, ``/adyen/v71/...``, ``/paypal/v2/...`` and so on: point an adapter's
``Credentials.base_url`` at ``{base_url}/{provider}``. Everything under ``/_sim`` is the admin API
(knobs, bursts, outages, completing asynchronous payments, statistics).

Each provider request passes through, in order: outage windows, queued bursts, random 429/5xx,
latency, the provider's idempotency replay, the handler (which changes state), and finally the
timeout knob, which holds the already-processed answer back so that the caller times out with the
money moved, exactly the ambiguous case adapters must report as ``unknown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from aiohttp import ClientSession, ClientTimeout, web

from adapters.simulator.books import Books
from adapters.simulator.knobs import Burst, ProviderKnobs, SimulatorConfig, load_config, merge_knobs

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SignedDelivery = Callable[[], tuple[bytes, dict[str, str]]]

IDEMPOTENCY_HEADERS = ("Idempotency-Key", "PayPal-Request-Id")
SIM_KEY: web.AppKey[Simulator] = web.AppKey("sim", "Simulator")


class ProviderSim(Protocol):
    """What each simulated provider module offers the server."""

    name: str

    def routes(self) -> list[web.RouteDef]:
        """Return the provider's routes, paths already prefixed with ``/{name}``."""
        ...

    async def complete(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """Finish an asynchronous payment from the admin API (customer paid, failed, returned)."""
        ...

    def reset(self) -> None:
        """Forget every payment."""
        ...


class Simulator:
    """Shared state: config, random source, statistics, idempotency cache, webhook delivery."""

    def __init__(self, config: SimulatorConfig) -> None:
        """Create the simulator with ``config``."""
        self.config = config
        self.rng = random.Random(config.seed)
        self.providers: dict[str, ProviderSim] = {}
        self.stats: dict[str, Counter[str]] = defaultdict(Counter)
        # What each provider performed, whatever it then answered (see books.py).
        self.books = Books()
        self.idempotency: dict[tuple[str, str], tuple[bytes, int, bytes, str]] = {}
        # Signature headers of stored answers: a provider that signs its answers signs replays too.
        self.replay_headers: dict[tuple[str, str], dict[str, str]] = {}
        self.deliveries: list[dict[str, Any]] = []
        # The last requests received (provider, method, path, body), for wire-format checks.
        self.requests_log: deque[tuple[str, str, str, bytes]] = deque(maxlen=2000)
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: ClientSession | None = None

    def knobs(self, provider: str) -> ProviderKnobs:
        """Return the effective knobs of ``provider``."""
        knobs = self.config.providers.get(provider)
        if knobs is None:
            knobs = self.config.providers[provider] = ProviderKnobs()
        return knobs

    def decide(self, provider: str, default_code: str) -> str | None:
        """Draw an authorization result: ``None`` approves, otherwise the decline code."""
        knobs = self.knobs(provider)
        if self.rng.random() < knobs.approval_rate:
            return None
        if not knobs.decline_mix:
            return default_code
        codes = list(knobs.decline_mix)
        return self.rng.choices(codes, weights=[knobs.decline_mix[c] for c in codes])[0]

    def secret(self, provider: str, default: str) -> str:
        """Return the webhook signing secret for ``provider``."""
        return self.knobs(provider).webhook_secret or default

    def emit(self, provider: str, deliver: SignedDelivery, *, completes: bool = False) -> None:
        """Schedule a notification: delayed, duplicated and signed per the provider's knobs.

        Args:
            provider: The provider name.
            deliver: Builds ``(body, headers)``, signed; called once per copy so each copy
                carries a fresh signature timestamp where the scheme has one.
            completes: Whether this notification finishes an asynchronous payment (only sent
                when ``auto_complete`` is on).
        """
        knobs = self.knobs(provider)
        hook = knobs.webhook
        if not hook.enabled or not hook.url or (completes and not knobs.auto_complete):
            return
        task = asyncio.get_running_loop().create_task(
            self._deliver(provider, hook.url, deliver, hook.delay_ms / 1000.0, 1 + hook.duplicates)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def schedule(self, delay_s: float, action: Callable[[], None]) -> None:
        """Run ``action`` after ``delay_s`` seconds (asynchronous completion)."""

        async def later() -> None:
            await asyncio.sleep(delay_s)
            action()

        task = asyncio.get_running_loop().create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, provider: str, url: str, deliver: SignedDelivery, delay: float, copies: int) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        if self._client is None or self._client.closed:
            self._client = ClientSession(timeout=ClientTimeout(total=10))
        for _ in range(copies):
            body, headers = deliver()
            try:
                async with self._client.post(url, data=body, headers=headers) as resp:
                    status = resp.status
            except Exception as exc:  # a receiver that is down must not stop the simulator
                status = 0
                self.stats[provider]["webhook_errors"] += 1
                self.deliveries.append({"provider": provider, "status": 0, "error": type(exc).__name__})
                continue
            self.stats[provider]["webhooks_sent"] += 1
            self.deliveries.append({"provider": provider, "status": status})

    async def close(self) -> None:
        """Cancel pending deliveries and close the webhook client."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.close()

    def reset(self) -> None:
        """Forget payments, idempotency keys, statistics and delivery log (keeps the knobs)."""
        for sim in self.providers.values():
            sim.reset()
        self.idempotency.clear()
        self.books.clear()
        self.replay_headers.clear()
        self.stats.clear()
        self.deliveries.clear()
        self.requests_log.clear()


def _provider_of(path: str) -> str | None:
    parts = path.split("/", 2)
    if len(parts) < 2 or not parts[1] or parts[1] == "_sim":
        return None
    return parts[1]


def _fault_middleware(sim: Simulator) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        provider = _provider_of(request.path)
        if provider is None or provider not in sim.providers:
            return await handler(request)
        knobs = sim.knobs(provider)
        stats = sim.stats[provider]
        stats["requests"] += 1
        sim.requests_log.append((provider, request.method, request.path, await request.read()))
        now = time.time()
        for outage in knobs.outages:
            if outage.active(now):
                stats["outage"] += 1
                if outage.status == 0 and request.transport is not None:
                    request.transport.close()
                return _fault_response(outage.status or 503, None)
        if knobs.bursts:
            burst = knobs.bursts[0]
            burst.count -= 1
            if burst.count <= 0:
                knobs.bursts.pop(0)
            stats[f"burst_{burst.status}"] += 1
            return _fault_response(burst.status, burst.retry_after)
        if knobs.rate_limit_rate and sim.rng.random() < knobs.rate_limit_rate:
            stats["random_429"] += 1
            return _fault_response(429, "0")
        if knobs.error_rate and sim.rng.random() < knobs.error_rate:
            stats[f"random_{knobs.error_status}"] += 1
            return _fault_response(knobs.error_status, None)
        delay = knobs.latency.sample(sim.rng)
        if delay > 0:
            await asyncio.sleep(delay)
        response = await _idempotent(sim, provider, request, handler)
        stats[f"status_{response.status}"] += 1
        if knobs.timeout_rate and sim.rng.random() < knobs.timeout_rate:
            stats["timeouts"] += 1
            await asyncio.sleep(knobs.timeout_ms / 1000.0)
        return response

    return middleware


async def _idempotent(sim: Simulator, provider: str, request: web.Request, handler: Handler) -> web.StreamResponse:
    key = next((request.headers[h] for h in IDEMPOTENCY_HEADERS if h in request.headers), None)
    if key is None or request.method != "POST":
        return await handler(request)
    body = await request.read()
    scope = (provider, f"{request.path}|{key}")
    stored = sim.idempotency.get(scope)
    if stored is not None:
        stored_request, status, stored_body, ctype = stored
        if stored_request != body:
            return web.json_response(
                {
                    "error": {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests "
                        "can only be used with the same parameters they were first used with.",
                    }
                },
                status=400 if provider == "stripe" else 422,
            )
        sim.stats[provider]["idempotent_replays"] += 1
        return web.Response(
            body=stored_body,
            status=status,
            content_type=ctype,
            headers={**sim.replay_headers.get(scope, {}), "Idempotent-Replayed": "true"},
        )
    response = await handler(request)
    if isinstance(response, web.Response) and response.status < 500:
        # Like Stripe, remember every processed answer, declines included, so a retry replays it.
        sim.idempotency[scope] = (body, response.status, response.body or b"", response.content_type)
        signed = {k: v for k, v in response.headers.items() if "signature" in k.lower()}
        if signed:
            sim.replay_headers[scope] = signed
    return response


def _fault_response(status: int, retry_after: str | None) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.json_response(
        {"error": {"type": "api_error", "message": "simulated fault", "status": status}},
        status=status,
        headers=headers,
    )


_decode_knobs_patch = msgspec.json.Decoder(dict[str, Any])


def _admin_routes(sim: Simulator) -> list[web.RouteDef]:
    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "providers": sorted(sim.providers)})

    async def get_config(_: web.Request) -> web.Response:
        return web.json_response(msgspec.to_builtins(sim.config))

    async def put_config(request: web.Request) -> web.Response:
        try:
            sim.config = msgspec.json.decode(await request.read(), type=SimulatorConfig)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if sim.config.seed is not None:
            sim.rng.seed(sim.config.seed)
        return web.json_response(msgspec.to_builtins(sim.config))

    async def patch_provider(request: web.Request) -> web.Response:
        name = request.match_info["provider"]
        if name not in sim.providers:
            return web.json_response({"error": f"unknown provider {name}"}, status=404)
        try:
            patch = _decode_knobs_patch.decode(await request.read())
            sim.config.providers[name] = merge_knobs(sim.knobs(name), patch)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(msgspec.to_builtins(sim.config.providers[name]))

    async def add_burst(request: web.Request) -> web.Response:
        name = request.match_info["provider"]
        try:
            burst = msgspec.json.decode(await request.read() or b"{}", type=Burst)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        sim.knobs(name).bursts.append(burst)
        return web.json_response(msgspec.to_builtins(sim.knobs(name).bursts))

    async def complete(request: web.Request) -> web.Response:
        name = request.match_info["provider"]
        provider = sim.providers.get(name)
        if provider is None:
            return web.json_response({"error": f"unknown provider {name}"}, status=404)
        body = _decode_knobs_patch.decode(await request.read() or b"{}")
        try:
            result = await provider.complete(request.match_info["ref"], body)
        except KeyError:
            return web.json_response({"error": "no such payment"}, status=404)
        return web.json_response(result)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "providers": {k: dict(v) for k, v in sim.stats.items()},
                "deliveries": sim.deliveries,
                # Paths only: bodies carry card numbers and stay in memory for in-process tests.
                "requests": [{"provider": p, "method": m, "path": path} for p, m, path, _ in sim.requests_log],
            }
        )

    async def books(_: web.Request) -> web.Response:
        return web.json_response({"movements": sim.books.to_builtins()})

    async def reset(_: web.Request) -> web.Response:
        sim.reset()
        return web.json_response({"status": "reset"})

    return [
        web.get("/_sim/health", health),
        web.get("/_sim/config", get_config),
        web.put("/_sim/config", put_config),
        web.patch("/_sim/providers/{provider}", patch_provider),
        web.post("/_sim/providers/{provider}/bursts", add_burst),
        web.post("/_sim/{provider}/payments/{ref}/complete", complete),
        web.get("/_sim/stats", stats),
        web.get("/_sim/books", books),
        web.post("/_sim/reset", reset),
    ]


def build_app(config: SimulatorConfig | None = None) -> web.Application:
    """Build the simulator application with every provider registered.

    Args:
        config: The knobs; defaults to an instant, always-approving simulator.
    """
    from adapters.simulator.providers import all_providers

    sim = Simulator(config or SimulatorConfig())
    app = web.Application(middlewares=[_fault_middleware(sim)], client_max_size=4 * 1024 * 1024)
    app[SIM_KEY] = sim
    for provider in all_providers(sim):
        sim.providers[provider.name] = provider
        app.add_routes(provider.routes())
    app.add_routes(_admin_routes(sim))

    async def on_cleanup(_: web.Application) -> None:
        await sim.close()

    app.on_cleanup.append(on_cleanup)
    return app


class SimulatorServer:
    """Run the simulator in-process, for tests::

        async with SimulatorServer(port=0) as sim:
            adapter = StripeAdapter(Credentials(api_key="sk_test_x", base_url=sim.url_for("stripe")))

    Args:
        host: Interface to bind (keep 127.0.0.1).
        port: Port, 0 for any free one.
        config: Knobs, or None for defaults.
        config_path: A JSON/TOML file to read the knobs from instead.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        config: SimulatorConfig | None = None,
        config_path: str | None = None,
    ) -> None:
        """Prepare the server; it starts on ``__aenter__`` or :meth:`start`."""
        self.host = host
        self.port = port
        self.app = build_app(config if config is not None else load_config(config_path))
        self._runner: web.AppRunner | None = None

    @property
    def sim(self) -> Simulator:
        """The simulator's shared state (for in-process inspection)."""
        simulator: Simulator = self.app[SIM_KEY]
        return simulator

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def url_for(self, provider: str) -> str:
        """The base URL an adapter for ``provider`` should use."""
        return f"{self.base_url}/{provider}"

    async def start(self) -> None:
        """Bind and start serving."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server
        if server is not None and getattr(server, "sockets", None):
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop serving and release everything."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimulatorServer:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the server."""
        await self.stop()


def run(host: str = "127.0.0.1", port: int = 8420, config_path: str | None = None) -> None:
    """Serve the simulator until interrupted (blocking); used by ``switch simulator``.

    Args:
        host: Interface to bind.
        port: Port to listen on.
        config_path: Optional JSON/TOML knob file.
    """
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        pass
    web.run_app(build_app(load_config(config_path)), host=host, port=port, access_log=None, print=None)
