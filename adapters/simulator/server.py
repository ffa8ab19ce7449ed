"""The simulator: one aiohttp server answering every provider under its own path prefix.

``/stripe/v1/...``, ``/adyen/v71/...``, ``/paypal/v2/...`` and so on: point an adapter's
``Credentials.base_url`` at ``{base_url}/{provider}``. Everything under ``/_sim`` is the admin API
(knobs, bursts, outages, completing asynchronous payments, statistics).

Each provider request passes through, in order: outage windows, queued bursts, the first queued
one-shot fault it matches (``ProviderKnobs.faults``, taken now, applied at its stage), random
429/5xx, latency, the provider's idempotency layer (409 while the same key is still in flight,
replay of a stored answer), the handler (which changes state and records the simulator's books),
and finally the faults that strike after processing: an injected 5xx instead of the real answer,
a dropped connection, or the answer held back (``timeout_rate`` or a ``stall`` fault) so that the
caller times out with the money moved. Those are the ambiguous cases adapters must report as
``unknown``; the books say what really happened.
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
from adapters.simulator.knobs import (
    Burst,
    Fault,
    ProviderKnobs,
    SimulatorConfig,
    load_config,
    merge_knobs,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SignedDelivery = Callable[[], tuple[bytes, dict[str, str]]]

IDEMPOTENCY_HEADERS = ("Idempotency-Key", "PayPal-Request-Id")
# Providers that store a 5xx under the idempotency key once the request started executing (Stripe
# documents that a replay then returns the same 500); the others replay the real answer.
REPLAYS_INJECTED_ERRORS = frozenset({"stripe"})
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
        # Idempotency scopes whose first request is still being processed (answered 409 meanwhile).
        self.in_flight: set[tuple[str, str]] = set()
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

    def replays_injected_errors(self, provider: str) -> bool:
        """Whether a 5xx injected after processing is what a replay of that request returns."""
        knob = self.knobs(provider).replay_injected_errors
        return provider in REPLAYS_INJECTED_ERRORS if knob is None else knob

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
        self.in_flight.clear()
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
        fault = _take_fault(knobs, request.method, request.path)
        if fault is not None:
            stats[f"fault_{fault.kind}"] += 1
            if fault.kind == "refuse":
                status = fault.answer_status()
                return _drop(request) if status == 0 else _fault_response(status, fault.retry_after)
        if fault is None:
            # A request that took a queued fault gets exactly that fault, never a random one too.
            # The after-processing rates are drawn only when set, so that seeded runs written
            # before those knobs existed draw the same numbers.
            if knobs.rate_limit_rate and sim.rng.random() < knobs.rate_limit_rate:
                stats["random_429"] += 1
                return _fault_response(429, "0")
            if knobs.error_rate and sim.rng.random() < knobs.error_rate:
                stats[f"random_{knobs.error_status}"] += 1
                return _fault_response(knobs.error_status, None)
            if knobs.error_after_rate and sim.rng.random() < knobs.error_after_rate:
                stats["random_error_after"] += 1
                fault = Fault(kind="error_after", status=knobs.error_after_status)
            elif knobs.drop_after_rate and sim.rng.random() < knobs.drop_after_rate:
                stats["random_drop_after"] += 1
                fault = Fault(kind="drop_after")
        delay = knobs.latency.sample(sim.rng)
        if delay > 0:
            await asyncio.sleep(delay)
        response = await _idempotent(sim, provider, request, handler, fault)
        if fault is not None and fault.kind == "drop_after":
            stats["dropped"] += 1
            return _drop(request)
        stats[f"status_{response.status}"] += 1
        if fault is not None and fault.kind == "stall":
            stats["timeouts"] += 1
            await asyncio.sleep(fault.ms / 1000.0)
        elif fault is None and knobs.timeout_rate and sim.rng.random() < knobs.timeout_rate:
            stats["timeouts"] += 1
            await asyncio.sleep(knobs.timeout_ms / 1000.0)
        return response

    return middleware


def _take_fault(knobs: ProviderKnobs, method: str, path: str) -> Fault | None:
    """Take one use of the first queued fault that aims at this request, if any."""
    for index, fault in enumerate(knobs.faults):
        if fault.matches(method, path):
            fault.count -= 1
            if fault.count <= 0:
                del knobs.faults[index]
            return fault
    return None


def _drop(request: web.Request) -> web.Response:
    """Close the connection so that the caller gets no answer at all.

    The returned response is never sent: aiohttp refuses to write to a closing transport (it raises
    ConnectionResetError, which it treats as a client that went away), so not a byte goes out.
    """
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=599, text="dropped; never sent")


async def _idempotent(
    sim: Simulator, provider: str, request: web.Request, handler: Handler, fault: Fault | None = None
) -> web.StreamResponse:
    """Run ``handler`` at most once per idempotency key and apply the faults that shape the answer.

    A POST carrying a key is tracked from the moment it starts executing: a second request with
    the same key and path meanwhile gets 409 ``idempotency_key_in_use`` without being processed;
    once it finished, its answer (or, for an injected 5xx where the provider stores those, the
    5xx) is what every replay gets.

    Args:
        sim: The simulator.
        provider: The provider the request is for.
        request: The request.
        handler: The provider's handler, which performs the request.
        fault: The fault this request drew: ``stall_in_flight`` holds the processed answer back
            with the key still in use, ``error_after`` answers a 5xx instead of the real answer.
    """
    key = next((request.headers[h] for h in IDEMPOTENCY_HEADERS if h in request.headers), None)
    if key is None or request.method != "POST":
        response = await handler(request)
        if fault is not None and fault.kind == "stall_in_flight":
            await asyncio.sleep(fault.ms / 1000.0)
        return _error_instead(fault, response)
    body = await request.read()
    scope = (provider, f"{request.path}|{key}")
    if scope in sim.in_flight:
        sim.stats[provider]["idempotency_in_use"] += 1
        return _in_use_response()
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
        replay = web.Response(
            body=stored_body,
            status=status,
            content_type=ctype,
            headers={**sim.replay_headers.get(scope, {}), "Idempotent-Replayed": "true"},
        )
        # A replay performs nothing, so a fault on it changes only this answer, never the stored one.
        return _error_instead(fault, replay)
    sim.in_flight.add(scope)
    try:
        response = await handler(request)
        if fault is not None and fault.kind == "stall_in_flight":
            await asyncio.sleep(fault.ms / 1000.0)
        answer = _error_instead(fault, response)
        if isinstance(response, web.Response) and response.status < 500:
            # Like Stripe, remember every processed answer, declines included, so a retry replays it.
            kept = answer if answer is not response and sim.replays_injected_errors(provider) else response
            if isinstance(kept, web.Response):
                _store(sim, scope, body, kept)
        return answer
    finally:
        sim.in_flight.discard(scope)


def _store(sim: Simulator, scope: tuple[str, str], body: bytes, response: web.Response) -> None:
    sim.idempotency[scope] = (body, response.status, response.body or b"", response.content_type)
    signed = {k: v for k, v in response.headers.items() if "signature" in k.lower()}
    if signed:
        sim.replay_headers[scope] = signed


def _error_instead(fault: Fault | None, response: web.StreamResponse) -> web.StreamResponse:
    """The injected 5xx when ``fault`` is ``error_after``, otherwise ``response`` itself."""
    if fault is None or fault.kind != "error_after":
        return response
    return _fault_response(fault.answer_status(), None)


def _in_use_response() -> web.Response:
    return web.json_response(
        {
            "error": {
                "type": "idempotency_error",
                "code": "idempotency_key_in_use",
                "message": "There is currently another in-progress request using this idempotency key "
                "(that probably means you submitted twice, and the other request is still going through). "
                "Please try again later.",
            }
        },
        status=409,
    )


def _fault_response(status: int, retry_after: str | None) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.json_response(
        {"error": {"type": "api_error", "message": "simulated fault", "status": status}},
        status=status,
        headers=headers,
    )


_decode_knobs_patch = msgspec.json.Decoder(dict[str, Any])
_decode_faults = msgspec.json.Decoder(Fault | list[Fault])


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

    async def add_faults(request: web.Request) -> web.Response:
        name = request.match_info["provider"]
        if name not in sim.providers:
            return web.json_response({"error": f"unknown provider {name}"}, status=404)
        try:
            queued = _decode_faults.decode(await request.read())
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        sim.knobs(name).faults.extend(queued if isinstance(queued, list) else [queued])
        return web.json_response(msgspec.to_builtins(sim.knobs(name).faults))

    async def clear_faults(request: web.Request) -> web.Response:
        name = request.match_info["provider"]
        if name not in sim.providers:
            return web.json_response({"error": f"unknown provider {name}"}, status=404)
        sim.knobs(name).faults.clear()
        return web.json_response([])

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
        web.post("/_sim/providers/{provider}/faults", add_faults),
        web.delete("/_sim/providers/{provider}/faults", clear_faults),
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
