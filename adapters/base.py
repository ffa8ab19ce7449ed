"""The provider contract: what every adapter implements and the value types it exchanges.

An adapter translates between the switch and one provider's wire format; it never decides. The
switch hands it plain value types defined here (never its own internals), and gets back a
``ProviderResult`` whose ``outcome`` is one of the :class:`Outcome` taxonomy, with the provider's
raw status and code kept for audit and for the cascade policy.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import string
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec


class Outcome(enum.StrEnum):
    """How a provider answered, reduced to what the switch acts on.

    ``declined_hard`` never cascades, ``declined_soft`` may be retried later on the same card,
    ``technical`` may cascade to the next provider, ``unknown`` never cascades and is resolved by
    a replay with the same key, a retrieve or a search.

    The outcome rule (DESIGN section 3), applied by every adapter through the helpers below:
    ``technical`` only when it is certain that nothing happened (the request never left, or the
    provider answered that it processed nothing); everything ambiguous is ``unknown``.
    """

    APPROVED = "approved"
    DECLINED_HARD = "declined_hard"
    DECLINED_SOFT = "declined_soft"
    TECHNICAL = "technical"
    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    UNKNOWN = "unknown"


class Flow(enum.StrEnum):
    """The operations an adapter may support."""

    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"
    SYNC = "sync"
    WEBHOOK = "webhook"


class AdapterError(Exception):
    """Base class of errors an adapter raises instead of returning a result."""


class FlowNotSupported(AdapterError):
    """Raised when an adapter is asked for a flow it does not declare."""

    def __init__(self, provider: str, flow: Flow | str) -> None:
        """Build the error.

        Args:
            provider: The adapter's provider name.
            flow: The flow that was asked for.
        """
        super().__init__(f"provider {provider!r} does not support the {flow!s} flow")
        self.provider = provider
        self.flow = str(flow)


class WebhookRejected(AdapterError):
    """Raised when an inbound notification fails signature or freshness checks."""

    def __init__(self, reason: str) -> None:
        """Build the error.

        Args:
            reason: A short machine-readable reason (``bad_signature``, ``stale``, ``malformed``).
        """
        super().__init__(reason)
        self.reason = reason


def _mask(secret: str) -> str:
    if len(secret) <= 4:
        return "****"
    return "****" + secret[-4:]


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    """A provider account's credentials; ``repr`` never shows a secret.

    ``api_key`` and ``webhook_secret`` are secrets; ``account_id`` (merchant account, client id,
    partner id) is not.
    """

    api_key: str = ""
    webhook_secret: str = ""
    account_id: str = ""
    base_url: str = ""
    extra: Mapping[str, str] = msgspec.field(default_factory=dict)

    def __repr__(self) -> str:
        """Return a representation with every secret masked."""
        return (
            f"Credentials(account_id={self.account_id!r}, base_url={self.base_url!r}, "
            f"api_key={_mask(self.api_key)!r}, webhook_secret={_mask(self.webhook_secret)!r})"
        )

    __str__ = __repr__


class CardData(msgspec.Struct, frozen=True, kw_only=True):
    """Card details for one provider call; lives in memory only, ``repr`` masks the number and CVC."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str | None = None
    holder_name: str | None = None
    brand: str = "unknown"

    def __repr__(self) -> str:
        """Return a representation showing only BIN and last four digits."""
        return (
            f"CardData(number={self.number[:6]}******{self.number[-4:]}, "
            f"exp={self.exp_month:02d}/{self.exp_year}, cvc={'***' if self.cvc else None})"
        )

    __str__ = __repr__


class AuthorizeRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What an adapter needs to authorize one payment attempt.

    ``amount`` is in ISO 4217 minor units of ``currency``; the adapter converts to the provider's
    own convention in its transformers.
    """

    payment_id: str
    attempt_id: str
    idempotency_key: str
    amount: int
    currency: str
    method_type: str = "card"
    card: CardData | None = None
    capture: bool = True
    reference: str | None = None
    customer_email: str | None = None
    customer_country: str | None = None
    customer_ip: str | None = None
    customer_name: str | None = None
    return_url: str | None = None
    details: Mapping[str, str] = msgspec.field(default_factory=dict)
    # Ask the provider to authenticate the cardholder (3-D Secure) whatever its own rules say:
    # the switch's SCA decision found no exemption (PSD2).
    three_ds_required: bool = False


class CaptureRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Capture ``amount`` of an authorization known to the provider as ``provider_reference``."""

    payment_id: str
    provider_reference: str
    idempotency_key: str
    amount: int
    currency: str
    final: bool = True


class VoidRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Release an uncaptured authorization."""

    payment_id: str
    provider_reference: str
    idempotency_key: str
    amount: int
    currency: str


class RefundRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Refund ``amount`` of a captured payment."""

    payment_id: str
    refund_id: str
    provider_reference: str
    idempotency_key: str
    amount: int
    currency: str


class SyncRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Ask the provider for the current state of one operation (recovery of unknown outcomes).

    Attributes:
        payment_id: The switch's payment id.
        provider_reference: The provider's id of the payment, when the provider ever returned it.
        attempt_id: The switch's attempt id (what adapters search by when no reference is known).
        operation: Which operation's answer was lost: ``authorize``, ``capture``, ``void`` or
            ``refund``.
        operation_id: The switch's capture, void or refund id (None for ``authorize``).
        amount: The operation's amount in ISO minor units, when it has one.
        currency: ISO 4217 code of ``amount``.
        attempted_at: Unix time the operation's intent was written; a search that finds nothing
            is proof of nothing only once the provider's consistency window has passed since then.
        expected_total: For a capture or refund: the provider's cumulative captured (refunded)
            amount, in ISO minor units, if this operation was performed (what the switch had
            booked before it plus ``amount``), so a partial capture can be recognised.
    """

    payment_id: str
    provider_reference: str | None
    attempt_id: str
    operation: str = "authorize"
    operation_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    attempted_at: float | None = None
    expected_total: int | None = None


class ProviderResult(msgspec.Struct, kw_only=True):
    """A provider's answer to one call, classified.

    Attributes:
        outcome: The switch's classification.
        provider_reference: The provider's id for the payment (or refund), when known.
        raw_status: The provider's own status word, kept verbatim.
        code: The provider's decline or error code, kept verbatim (None when approved).
        message: A human-readable explanation, never containing card data.
        next_action: For ``requires_action``/``pending``: what the customer must do
            (``{"type": "redirect_to_url", "url": ...}`` or a voucher).
        amount: The amount the provider acted on, in ISO minor units, when it says.
    """

    outcome: Outcome
    provider_reference: str | None = None
    raw_status: str | None = None
    code: str | None = None
    message: str | None = None
    next_action: dict[str, Any] | None = None
    amount: int | None = None


class WebhookEvent(msgspec.Struct, kw_only=True):
    """A verified inbound notification, normalized.

    ``event_id`` is the provider's id for the notification, used to make duplicates harmless.
    """

    provider: str
    event_id: str
    event_type: str
    provider_reference: str | None
    outcome: Outcome
    payment_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    code: str | None = None
    raw_status: str | None = None
    # True when the provider takes back money it had settled (a SEPA return, a chargeback).
    reversal: bool = False


class ProviderAdapter(abc.ABC):
    """One provider. Subclasses declare ``name`` and ``flows`` and implement the flows they declare.

    Every method is a coroutine that returns a :class:`ProviderResult` and does not raise for a
    provider-side failure: timeouts, 5xx, transport errors and undecodable answers become
    ``technical`` or ``unknown`` outcomes under the outcome rule, so that the caller's cascade
    policy sees them.
    """

    name: str = ""
    flows: frozenset[Flow] = frozenset()
    # The exact body a provider requires in answer to a notification (None: any 2xx will do).
    webhook_ack: str | None = None
    # True when a notification's credential does not cover its status (a static token, a signature
    # over other fields): the switch confirms the status with ``sync`` before acting on it.
    webhook_confirm_by_sync: bool = False

    def __init__(self, credentials: Credentials | None = None) -> None:
        """Create the adapter.

        Args:
            credentials: The provider account to use; adapters that need none accept ``None``.
        """
        self.credentials = credentials or Credentials()

    def supports(self, flow: Flow) -> bool:
        """Return whether this adapter declares ``flow``."""
        return flow in self.flows

    def require(self, flow: Flow) -> None:
        """Raise :class:`FlowNotSupported` unless ``flow`` is declared."""
        if flow not in self.flows:
            raise FlowNotSupported(self.name, flow)

    @abc.abstractmethod
    async def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """Authorize (and, when ``request.capture``, capture) a payment; every adapter has this flow."""

    async def capture(self, request: CaptureRequest) -> ProviderResult:
        """Capture all or part of an authorization."""
        raise FlowNotSupported(self.name, Flow.CAPTURE)

    async def void(self, request: VoidRequest) -> ProviderResult:
        """Release an uncaptured authorization."""
        raise FlowNotSupported(self.name, Flow.VOID)

    async def refund(self, request: RefundRequest) -> ProviderResult:
        """Refund part or all of a captured payment."""
        raise FlowNotSupported(self.name, Flow.REFUND)

    async def sync(self, request: SyncRequest) -> ProviderResult:
        """Read the provider's current state of the operation ``request.operation`` names."""
        raise FlowNotSupported(self.name, Flow.SYNC)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """Verify and parse an inbound notification.

        Raises:
            WebhookRejected: When the signature or payload is not acceptable.
            FlowNotSupported: When the adapter takes no webhooks.
        """
        raise FlowNotSupported(self.name, Flow.WEBHOOK)

    async def close(self) -> None:  # noqa: B027 - optional hook, most adapters hold nothing
        """Release pooled connections."""


def currency_exponent(currency: str) -> int:
    """Return the ISO 4217 minor-unit exponent of ``currency`` (JPY 0, EUR 2, KWD 3).

    Raises:
        ValueError: For an unknown code or one without minor units (XAU).
    """
    import iso4217

    try:
        exponent = iso4217.Currency(currency.upper()).exponent
    except (ValueError, KeyError):
        raise ValueError(f"unknown currency {currency!r}") from None
    if exponent is None:
        raise ValueError(f"currency {currency!r} has no minor unit")
    return int(exponent)


def transport_outcome(error: Exception) -> ProviderResult:
    """Classify a transport failure raised by :mod:`adapters._http`.

    ``NotSent`` (no try of the request can have reached the provider) is ``technical``: safe to
    cascade. Anything else (``TimedOut``, a connection lost after writing) is ``unknown``, for
    every call including status look-ups: a look-up that failed proves nothing.

    Args:
        error: The ``NotSent`` or ``TimedOut`` exception.
    """
    from adapters._http import NotSent

    if isinstance(error, NotSent):
        return ProviderResult(outcome=Outcome.TECHNICAL, raw_status="not_sent", message=str(error))
    return ProviderResult(outcome=Outcome.UNKNOWN, raw_status="timeout", message=str(error))


def http_error_outcome(status: int) -> Outcome:
    """Classify an HTTP status that carried no answer the adapter could interpret.

    429 is ``technical`` (rate limiting refuses before processing). 409 is ``unknown``: a
    conflict says an object or a request with this key already exists or is still in progress.
    Any 5xx is ``unknown`` (Stripe documents 500 as indeterminate; 502/503/504 from a gateway or
    load balancer may hide a processed request). Any other 4xx is ``technical``: our request was
    refused. Everything else (a 1xx/2xx/3xx reaching here) is ``unknown``.
    """
    if status == 429:
        return Outcome.TECHNICAL
    if status == 409 or status >= 500:
        return Outcome.UNKNOWN
    if 400 <= status < 500:
        return Outcome.TECHNICAL
    return Outcome.UNKNOWN


def undecodable_outcome(status: int, reference: str | None = None) -> ProviderResult:
    """The result of a 2xx answer that does not decode: the provider may have acted, so ``unknown``."""
    return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=reference, raw_status=f"unreadable_{status}")


def lookup_failed(status: int, reference: str | None = None, code: str | None = None) -> ProviderResult:
    """The result of a status look-up the provider refused or failed: ``unknown``, never ``technical``."""
    return ProviderResult(outcome=Outcome.UNKNOWN, provider_reference=reference, raw_status=f"http_{status}", code=code)


def not_found_outcome(request: SyncRequest, consistency_window_s: float, *, now: float | None = None) -> ProviderResult:
    """Classify a look-up by our own id that found nothing.

    A search can lag behind writes (Stripe's is eventually consistent: normally under a minute,
    up to an hour during incidents), so "nothing found" proves nothing was done only once the
    window has passed since the intent was written. Until then, or when that time is not known,
    the outcome stays ``unknown`` (code ``not_found_yet``); afterwards it is ``technical``
    (code ``not_found``: the provider never acted on the request).

    Args:
        request: The sync request; ``attempted_at`` is the Unix time the intent was written.
        consistency_window_s: How long the provider's look-up may lag behind its writes.
        now: The current Unix time (defaults to ``time.time()``).
    """
    current = time.time() if now is None else now
    if request.attempted_at is None or current - request.attempted_at < consistency_window_s:
        return ProviderResult(
            outcome=Outcome.UNKNOWN,
            provider_reference=request.provider_reference,
            raw_status="not_found",
            code="not_found_yet",
            message="not visible yet; the provider's look-up may lag",
        )
    return ProviderResult(
        outcome=Outcome.TECHNICAL,
        provider_reference=request.provider_reference,
        raw_status="not_found",
        code="not_found",
        message="the provider has no record of the request",
    )


# Characters passed through unchanged in a provider idempotency key: safe in an HTTP header and
# in every provider's documented key format. "~" is kept out: it marks a hashed key, so a raw key
# can never equal another raw key's hashed form.
_KEY_SAFE = frozenset(string.ascii_letters + string.digits + "-_.:")
_KEY_PREFIX = 16
_KEY_MIN_HASH = 32


def provider_key(raw: str, limit: int) -> str:
    """Fit the switch's idempotency key into a provider's documented length and character set.

    Deterministic (the same raw key always gives the same provider key, so a replay after a
    restart reaches the provider's stored answer). A raw key that fits and uses only safe
    characters passes unchanged; any other becomes a readable prefix of its safe characters,
    ``~`` and its SHA-256 in hex, truncated to ``limit`` (at least 128 bits of the hash are kept).

    Args:
        raw: The key the switch derived from its intent (``cap_01J...``, ``merchant:key``).
        limit: The provider's maximum key length.

    Raises:
        ValueError: When ``limit`` is too small to hold 128 bits of hash.
    """
    if limit < _KEY_MIN_HASH:
        raise ValueError(f"a provider key limit of {limit} cannot hold a safe hash")
    if raw and len(raw) <= limit and all(c in _KEY_SAFE for c in raw):
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()
    prefix = "".join(c for c in raw if c in _KEY_SAFE)[: min(_KEY_PREFIX, limit - 1 - _KEY_MIN_HASH)]
    return f"{prefix}~{digest}"[:limit]


def minor_to_decimal(amount: int, exponent: int) -> Decimal:
    """Express integer minor units as an exact :class:`~decimal.Decimal` with ``exponent`` places.

    ``minor_to_decimal(1250, 2) == Decimal("12.50")``; integer arithmetic only, never a float.
    """
    return Decimal(amount).scaleb(-exponent)


def decimal_to_minor(value: Decimal | int | str, exponent: int) -> int:
    """Convert a provider's decimal amount back to integer minor units, refusing to round.

    Raises:
        ValueError: When ``value`` is not a number or carries more than ``exponent`` decimals.
    """
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError("not a decimal amount") from None
    scaled = number.scaleb(exponent)
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise ValueError(f"amount has more than {exponent} decimals")
    return int(scaled)


_exact_json = msgspec.json.Decoder(float_hook=Decimal)


def decode_json_exact(body: bytes) -> Any:
    """Decode JSON with every non-integer number as a ``Decimal`` (so no amount passes a float).

    Raises:
        msgspec.DecodeError: When the body is not JSON.
    """
    return _exact_json.decode(body)


def sorted_pairs(params: Mapping[str, Any], *, exclude: frozenset[str] = frozenset()) -> str:
    """Canonical ``k1=v1&k2=v2`` string over keys sorted by code point, skipping empty values.

    The common signing base of Chinese cross-border gateways (PingPong, LianLian, Alipay-style
    APIs): nested objects are not flattened, so callers sign flat parameter maps only.

    Args:
        params: The parameters; ``None`` and ``""`` values are left out.
        exclude: Keys never signed (the signature field itself).
    """
    return "&".join(
        f"{key}={params[key]}" for key in sorted(params) if key not in exclude and params[key] not in (None, "")
    )
