"""The simulator's knobs: per-provider fault and behaviour settings, from a file or the admin API.

A config file (JSON or TOML) looks like::

    {"seed": 7,
     "providers": {
        "stripe": {"latency": {"dist": "lognormal", "median_ms": 40, "sigma": 0.4,
                               "tail_prob": 0.01, "tail_ms": 2000},
                   "approval_rate": 0.9, "decline_mix": {"insufficient_funds": 3, "stolen_card": 1},
                   "timeout_rate": 0.001, "error_rate": 0.002, "rate_limit_rate": 0.001,
                   "webhook": {"url": "http://127.0.0.1:8000/webhooks/stripe", "delay_ms": 500,
                               "duplicates": 1}}}}

A provider missing from ``providers`` uses the defaults below: instant, always approving, no
faults, no webhooks.
"""

from __future__ import annotations

import math
import random
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec


class Latency(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Added response latency.

    ``fixed`` waits ``ms``; ``uniform`` draws between ``low_ms`` and ``high_ms``; ``lognormal``
    draws around ``median_ms`` with shape ``sigma``. With probability ``tail_prob`` the draw is
    replaced by ``tail_ms`` (the slow tail real providers show at p99.9).
    """

    dist: Literal["fixed", "uniform", "lognormal"] = "fixed"
    ms: float = 0.0
    low_ms: float = 0.0
    high_ms: float = 0.0
    median_ms: float = 0.0
    sigma: float = 0.5
    tail_prob: float = 0.0
    tail_ms: float = 0.0

    def sample(self, rng: random.Random) -> float:
        """Return one latency in seconds."""
        if self.tail_prob and rng.random() < self.tail_prob:
            return self.tail_ms / 1000.0
        if self.dist == "uniform":
            return rng.uniform(self.low_ms, self.high_ms) / 1000.0
        if self.dist == "lognormal":
            if self.median_ms <= 0:
                return 0.0
            return rng.lognormvariate(math.log(self.median_ms), self.sigma) / 1000.0
        return self.ms / 1000.0


class Burst(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The next ``count`` requests answer ``status`` (429 or a 5xx) without being processed."""

    status: int = 503
    count: int = 1
    retry_after: str | None = None


FaultKind = Literal["refuse", "stall", "stall_in_flight", "error_after", "drop_after"]
# What each fault kind answers when ``Fault.status`` is left unset.
DEFAULT_FAULT_STATUS: dict[str, int] = {"refuse": 503, "error_after": 500}


class Fault(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A one-shot fault for the next ``count`` requests that match it (queued in ``faults``).

    Kinds, and whether the request is performed (state changed, books recorded):

    * ``refuse``: not performed; answers ``status`` (default 503; 429 works with ``retry_after``;
      0 closes the connection without an answer).
    * ``stall``: performed and its answer stored for replay, then the answer is held back ``ms``
      (a retry with the same key during the stall gets the stored answer).
    * ``stall_in_flight``: performed, then held back ``ms`` with the idempotency key still in use,
      so a concurrent retry with the same key gets 409 ``idempotency_key_in_use``; the answer is
      stored when the stall ends.
    * ``error_after``: performed, then answered ``status`` (default 500) instead of the real
      answer; whether a replay returns that error or the real answer is
      ``ProviderKnobs.replay_injected_errors``.
    * ``drop_after``: performed, then the connection is closed without a byte of answer.

    ``match`` (a substring of the path) and ``method`` narrow which requests the fault takes, so a
    test can aim at "the next POST to /stripe/v1/refunds"; unset, it takes the next request of any
    kind to the provider. A request takes at most one fault: the first in the queue that matches.
    """

    kind: FaultKind
    status: int | None = None
    ms: Annotated[float, msgspec.Meta(ge=0)] = 30_000.0
    count: Annotated[int, msgspec.Meta(ge=1)] = 1
    match: str | None = None
    method: str | None = None
    retry_after: str | None = None

    def matches(self, method: str, path: str) -> bool:
        """Return whether a request with ``method`` and ``path`` is one this fault aims at."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.match is None or self.match in path

    def answer_status(self) -> int:
        """The status this fault answers with, its kind's default when ``status`` is unset."""
        return self.status if self.status is not None else DEFAULT_FAULT_STATUS.get(self.kind, 500)


class Outage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Between ``start`` and ``end`` (Unix seconds) every request answers ``status``.

    ``status`` 0 means the connection is closed without an answer.
    """

    start: float
    end: float
    status: int = 503

    def active(self, now: float) -> bool:
        """Return whether the window covers ``now``."""
        return self.start <= now < self.end


class Webhook(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Outbound notification delivery, signed the way the provider signs.

    ``delay_ms`` postpones each delivery; ``duplicates`` sends that many extra copies of each
    notification (same event id) as real providers do on retries.
    """

    url: str | None = None
    delay_ms: float = 0.0
    duplicates: int = 0
    enabled: bool = True


class ProviderKnobs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything that can be set for one provider.

    Attributes:
        latency: Added latency before each answer.
        approval_rate: Probability that an authorization approves.
        decline_mix: Relative weights of the provider's decline codes used when one declines;
            empty means the provider's generic decline.
        timeout_rate: Probability that a request is processed but answered only after
            ``timeout_ms`` (the caller sees a timeout with the money possibly moved).
        timeout_ms: How long such an answer hangs.
        error_rate: Probability of answering ``error_status`` without processing.
        error_status: The 5xx used by ``error_rate``.
        rate_limit_rate: Probability of answering 429 without processing.
        error_after_rate: Probability that a request is processed and then answered
            ``error_after_status`` instead of its real answer.
        error_after_status: The 5xx used by ``error_after_rate``.
        drop_after_rate: Probability that a request is processed and then its connection closed
            without an answer.
        replay_injected_errors: Whether a 5xx injected after processing (``error_after``) is
            stored under the request's idempotency key, so that a replay returns the same 5xx, as
            Stripe does; otherwise a replay returns the real answer that was withheld. ``None``
            means the provider's own behaviour: stored for ``stripe``, not for the others.
        bursts: Queued bursts of 429/5xx, consumed in order.
        faults: Queued one-shot faults (:class:`Fault`), each taken by the next request it
            matches.
        search_lag_ms: How long a new object stays out of the provider's search results
            (Stripe's search is eventually consistent: an object created less than this long ago
            is not found, though retrieving it by id works).
        search_down: Whether the provider's search endpoint is failing: it answers 500 without
            searching, while retrieving by id still works.
        outages: Windows during which the provider is down.
        webhook: Notification delivery.
        auto_complete: Whether asynchronous payments (vouchers, wallets, debits, redirects)
            complete by themselves after ``webhook.delay_ms``.
        settle_delay_ms: How long a submitted SEPA batch stays pending before it settles by
            itself (with ``auto_complete``); the settlement notification then follows.
        webhook_secret: The secret notifications are signed with (HMAC key, server key, token).
    """

    latency: Latency = msgspec.field(default_factory=Latency)
    approval_rate: float = 1.0
    decline_mix: dict[str, float] = msgspec.field(default_factory=dict)
    timeout_rate: float = 0.0
    timeout_ms: float = 30_000.0
    error_rate: float = 0.0
    error_status: int = 500
    rate_limit_rate: float = 0.0
    error_after_rate: float = 0.0
    error_after_status: int = 500
    drop_after_rate: float = 0.0
    replay_injected_errors: bool | None = None
    bursts: list[Burst] = msgspec.field(default_factory=list)
    faults: list[Fault] = msgspec.field(default_factory=list)
    search_lag_ms: float = 0.0
    search_down: bool = False
    outages: list[Outage] = msgspec.field(default_factory=list)
    webhook: Webhook = msgspec.field(default_factory=Webhook)
    auto_complete: bool = True
    settle_delay_ms: float = 0.0
    webhook_secret: str | None = None


class SimulatorConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The whole simulator configuration."""

    seed: int | None = None
    providers: dict[str, ProviderKnobs] = msgspec.field(default_factory=dict)


def load_config(path: str | Path | None) -> SimulatorConfig:
    """Read a JSON or TOML config file; ``None`` gives the defaults.

    Raises:
        msgspec.ValidationError: When a knob has the wrong type or an unknown name.
    """
    if path is None:
        return SimulatorConfig()
    data = Path(path).read_bytes()
    if str(path).endswith(".toml"):
        return msgspec.convert(tomllib.loads(data.decode()), SimulatorConfig)
    return msgspec.json.decode(data, type=SimulatorConfig)


def merge_knobs(current: ProviderKnobs, patch: dict[str, Any]) -> ProviderKnobs:
    """Apply a partial update; nested ``latency`` and ``webhook`` merge field by field.

    An outage given as ``{"start_in_s": 0, "duration_s": 5}`` is turned into absolute times.
    """
    base = msgspec.to_builtins(current)
    for key, value in patch.items():
        if key in {"latency", "webhook"} and isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        elif key == "outages" and isinstance(value, list):
            base[key] = [relative_outage(o) for o in value]
        else:
            base[key] = value
    return msgspec.convert(base, ProviderKnobs)


def relative_outage(spec: dict[str, Any]) -> dict[str, Any]:
    """Turn ``{"start_in_s", "duration_s"}`` into ``{"start", "end"}``; leave absolute specs alone."""
    if "duration_s" not in spec:
        return spec
    start = time.time() + float(spec.get("start_in_s", 0.0))
    return {"start": start, "end": start + float(spec["duration_s"]), "status": spec.get("status", 503)}
