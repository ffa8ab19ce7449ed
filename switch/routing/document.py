"""The routing config document (DESIGN section 7): its schema, validation, matching and rollout.

A merchant's document is parsed and checked once (:func:`parse_document`), compiled once per
version (:class:`CompiledRouting`) and then matched against every payment in a few microseconds:
each ``when`` dimension is precomputed into a table ``value -> bitmask of the rules that accept
it``, so a match is one dictionary look-up and one AND per dimension, and the lowest set bit is
the first matching rule. Rules are tried in order; the first that matches wins, none means the
``default``.

Soft-decline codes a merchant may cascade on are a closed list (:data:`CASCADABLE_SOFT_CODES`),
chosen from the decline taxonomy (reference ``payments-domain.md`` 4.8):

* allowed: ``do_not_honor`` (Visa 05, category 4 "generic": reattempts allowed; acquirers raise
  it for their own risk and cross-border reasons, which is exactly where a local acquirer helps),
  ``try_again_later`` (Mastercard MAC 02), ``reenter_transaction`` (Visa 19) and
  ``no_action_taken`` (category 2 "cannot approve now"), ``issuer_not_available`` /
  ``issuer_unavailable`` (Visa 91) and ``processing_error`` (Visa 96), and the acquirer-side
  refusals the issuer never saw: ``card_not_supported``, ``currency_not_supported``;
* refused, with the reason in the error: lost, stolen, pickup, fraudulent, restricted,
  do-not-try-again and revocation codes (category 1 / MAC 03, 21, 99: never reattempt),
  ``insufficient_funds`` and card-level limits (the same card fails on every provider),
  ``authentication_required`` (re-run with 3-D Secure on the same flow instead), CVC, number and
  expiry errors (the customer must correct them). Technical failures always cascade and
  ``unknown`` never does; neither needs listing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Annotated, Any, Literal

import msgspec

from switch.money import MAX_AMOUNT, is_known_currency
from switch.routing.plan import CascadePolicy

STRATEGIES = ("cheapest", "reliable", "weighted", "priority")

#: Soft-decline codes a merchant may list in ``cascade.soft_decline_codes`` (see module docstring).
CASCADABLE_SOFT_CODES: frozenset[str] = frozenset(
    {
        "do_not_honor",
        "try_again_later",
        "reenter_transaction",
        "no_action_taken",
        "issuer_not_available",
        "issuer_unavailable",
        "processing_error",
        "card_not_supported",
        "currency_not_supported",
    }
)

#: Codes a merchant might try to list and why the reference forbids cascading on them.
_NEVER_CASCADE: dict[str, str] = {
    **dict.fromkeys(
        (
            "lost_card",
            "stolen_card",
            "pickup_card",
            "fraudulent",
            "restricted_card",
            "do_not_try_again",
            "revocation_of_authorization",
            "revocation_of_all_authorizations",
            "stop_payment_order",
            "security_violation",
            "merchant_blacklist",
            "generic_decline",
            "card_declined",
        ),
        "the issuer will never approve it (Visa category 1, Mastercard MAC 03/21/99)",
    ),
    **dict.fromkeys(
        ("insufficient_funds", "card_velocity_exceeded", "withdrawal_count_limit_exceeded"),
        "the same card fails on every provider",
    ),
    "authentication_required": "it needs 3-D Secure on the same provider, not another provider",
    **dict.fromkeys(
        ("incorrect_cvc", "invalid_cvc", "expired_card", "incorrect_number", "invalid_number", "incorrect_zip"),
        "the customer must correct the card data first",
    ),
    **dict.fromkeys(("risk_blocked", "sanctions_hit"), "the switch's own risk and sanctions blocks are final"),
}

MAX_RULES = 100
MAX_CANDIDATES = 20
MAX_VALUES = 300  # enough for every country code in one list
MAX_WEIGHT = 10_000

RULE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_BIN_PREFIX = re.compile(r"[0-9]{1,8}")
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
FUNDING = frozenset({"credit", "debit", "prepaid"})

_Values = Annotated[tuple[str, ...], msgspec.Meta(min_length=1, max_length=MAX_VALUES)]
_Amount = Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)]


class DocumentError(ValueError):
    """A routing document that does not parse or validate.

    Attributes:
        message: What is wrong, for a human.
        param: Dotted path of the offending field (``rules.0.strategy``); None for the whole body.
    """

    def __init__(self, message: str, param: str | None) -> None:
        """Build the error.

        Args:
            message: What is wrong.
            param: Dotted path of the offending field, or None when the body itself is wrong.
        """
        super().__init__(message)
        self.message = message
        self.param = param


class AmountRange(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Amount in minor units: ``gte`` inclusive, ``lt`` exclusive; either may be absent."""

    gte: _Amount | None = None
    lt: _Amount | None = None


class When(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Conditions of a rule; every present field must match, an absent one matches anything.

    A list matches when the payment's value is in it; a payment without the value (no card
    country for a wallet payment) does not match a rule that asks for one.
    """

    currency: _Values | None = None
    payment_method: _Values | None = None
    card_country: _Values | None = None
    ip_country: _Values | None = None
    amount: AmountRange | None = None
    card_brand: _Values | None = None
    bin_prefix: _Values | None = None
    funding: _Values | None = None
    customer_segment: _Values | None = None
    metadata: Annotated[dict[str, _Values], msgspec.Meta(min_length=1, max_length=20)] | None = None


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """One rule: when it matches, rank ``candidates`` by ``strategy``."""

    name: str
    when: When = When()
    strategy: str
    candidates: Annotated[tuple[str, ...], msgspec.Meta(min_length=1, max_length=MAX_CANDIDATES)]
    weights: dict[str, int] | None = None


class DefaultTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """What a payment no rule matched is routed by."""

    strategy: str
    candidates: Annotated[tuple[str, ...], msgspec.Meta(min_length=1, max_length=MAX_CANDIDATES)]
    weights: dict[str, int] | None = None


class Cascade(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How far a payment may fall through its plan."""

    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=5)] = 2
    soft_decline_codes: Annotated[tuple[str, ...], msgspec.Meta(max_length=len(CASCADABLE_SOFT_CODES))] = ()
    deadline_ms: Annotated[int, msgspec.Meta(ge=100, le=60_000)] = 20_000

    def policy(self) -> CascadePolicy:
        """Return the cascade policy of ``switch.routing.plan`` this section configures."""
        return CascadePolicy(
            max_attempts=self.max_attempts,
            soft_decline_codes=frozenset(self.soft_decline_codes),
            deadline_ms=self.deadline_ms,
        )


class Reliable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Statistics settings: sliding window, exploration, latency cut-off, circuit breaker, prior."""

    window_s: Annotated[int, msgspec.Meta(ge=10, le=3600)] = 300
    exploration_percent: Annotated[int, msgspec.Meta(ge=0, le=50)] = 5
    latency_cutoff_ms: Annotated[int, msgspec.Meta(ge=1, le=120_000)] = 3000
    breaker_failures: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    breaker_cooldown_s: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 30
    min_samples: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 20


class Rollout(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Share of traffic (by sticky bucket) a new version takes while it is a canary."""

    percent: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100
    sticky: Literal["customer", "card"] = "customer"


class RoutingDocument(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A merchant's routing config, as PUT and stored."""

    rules: Annotated[tuple[Rule, ...], msgspec.Meta(max_length=MAX_RULES)] = ()
    default: DefaultTarget
    cascade: Cascade = Cascade()
    reliable: Reliable = Reliable()
    rollout: Rollout = Rollout()


class PaymentFacts(msgspec.Struct, kw_only=True):
    """What routing knows about one payment (never a card number: only its BIN)."""

    amount: int
    currency: str
    payment_method: str
    card_country: str | None = None
    ip_country: str | None = None
    card_brand: str | None = None
    bin: str | None = None
    funding: str | None = None
    customer_segment: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    sticky_key: str | None = None


class Target(msgspec.Struct, frozen=True, eq=False, weakref=True):
    """A strategy and its candidates, compiled; compared by identity so it can key per-rule state."""

    strategy: str
    candidates: tuple[str, ...]
    weights: tuple[int, ...] | None = None


class Match(msgspec.Struct, frozen=True):
    """The rule that matched (None: the default) and its target."""

    rule: str | None
    target: Target


# --- parsing --------------------------------------------------------------------------------------

_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\.\.\.\]")
_FIELD_IN_MESSAGE = re.compile(r"(?:unknown|required) field `([^`]+)`")


def _dotted(msgspec_path: str) -> list[str]:
    parts: list[str] = []
    for match in _PATH_PART.finditer(msgspec_path):
        if match.group(0) == "[...]":
            break  # a dict value: the key is not reported, so name the dict
        parts.append(match.group(1) or match.group(2))
    return parts


def _validation_error(exc: msgspec.ValidationError) -> DocumentError:
    text = str(exc)
    message, _, path = text.partition(" - at `")
    parts = _dotted(path.rstrip("`")) if path else []
    field = _FIELD_IN_MESSAGE.search(message)
    if field and "[...]" not in path:
        parts.append(field.group(1))
    return DocumentError(message, ".".join(parts) or None)


def parse_document(raw: bytes | str | Mapping[str, Any], known_accounts: Collection[str]) -> RoutingDocument:
    """Decode and validate a routing document.

    Args:
        raw: The JSON body, or an already decoded mapping (a stored document).
        known_accounts: The provider accounts the merchant may route to.

    Returns:
        The validated document.

    Raises:
        DocumentError: The first problem found, with the dotted path of the offending field.
    """
    try:
        if isinstance(raw, bytes | str):
            document = msgspec.json.decode(raw, type=RoutingDocument)
        else:
            document = msgspec.convert(raw, RoutingDocument)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise DocumentError(f"the body is not valid JSON: {exc}", None) from None
    _check(document, frozenset(known_accounts))
    return document


def _check(document: RoutingDocument, known: frozenset[str]) -> None:
    names: set[str] = set()
    for index, rule in enumerate(document.rules):
        where = f"rules.{index}"
        if not RULE_NAME.fullmatch(rule.name):
            raise DocumentError(
                f"rule name {rule.name!r} must be 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit",
                f"{where}.name",
            )
        if rule.name in names:
            raise DocumentError(f"rule name {rule.name!r} is used twice", f"{where}.name")
        names.add(rule.name)
        _check_when(rule.when, f"{where}.when")
        _check_target(rule.strategy, rule.candidates, rule.weights, known, where)
    default = document.default
    _check_target(default.strategy, default.candidates, default.weights, known, "default")
    for index, code in enumerate(document.cascade.soft_decline_codes):
        if code not in CASCADABLE_SOFT_CODES:
            why = _NEVER_CASCADE.get(code, "it is not a soft decline another provider may approve")
            allowed = ", ".join(sorted(CASCADABLE_SOFT_CODES))
            raise DocumentError(
                f"soft decline code {code!r} cannot cascade: {why} (allowed: {allowed})",
                f"cascade.soft_decline_codes.{index}",
            )


def _check_target(
    strategy: str,
    candidates: tuple[str, ...],
    weights: dict[str, int] | None,
    known: frozenset[str],
    where: str,
) -> None:
    if strategy not in STRATEGIES:
        raise DocumentError(
            f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}",
            f"{where}.strategy",
        )
    seen: set[str] = set()
    for index, account in enumerate(candidates):
        if account in seen:
            raise DocumentError(f"candidate {account!r} is listed twice", f"{where}.candidates.{index}")
        if account not in known:
            raise DocumentError(
                f"candidate {account!r} is not one of the merchant's accounts", f"{where}.candidates.{index}"
            )
        seen.add(account)
    if strategy != "weighted":
        if weights is not None:
            raise DocumentError("weights are only for the weighted strategy", f"{where}.weights")
        return
    if weights is None:
        raise DocumentError("the weighted strategy needs weights for its candidates", f"{where}.weights")
    for account, weight in weights.items():
        if account not in seen:
            raise DocumentError(f"weight for {account!r}, which is not a candidate", f"{where}.weights.{account}")
        if not 1 <= weight <= MAX_WEIGHT:
            raise DocumentError(f"weight must be 1..{MAX_WEIGHT}, got {weight}", f"{where}.weights.{account}")
    missing = [account for account in candidates if account not in weights]
    if missing:
        raise DocumentError(f"no weight for candidate {missing[0]!r}", f"{where}.weights")


def _check_values(values: tuple[str, ...] | None, where: str, valid: Callable[[str], bool], what: str) -> None:
    if values is None:
        return
    for index, value in enumerate(values):
        if not valid(value):
            raise DocumentError(f"{value!r} is not {what}", f"{where}.{index}")


def _check_when(when: When, where: str) -> None:
    country = "a two-letter upper-case country code"
    name = "a lower-case name (a-z, 0-9, '_', '-')"
    _check_values(when.currency, f"{where}.currency", is_known_currency, "an ISO 4217 currency code")
    _check_values(when.payment_method, f"{where}.payment_method", _TOKEN.fullmatch, name)
    _check_values(when.card_country, f"{where}.card_country", _COUNTRY.fullmatch, country)
    _check_values(when.ip_country, f"{where}.ip_country", _COUNTRY.fullmatch, country)
    _check_values(when.card_brand, f"{where}.card_brand", _TOKEN.fullmatch, name)
    _check_values(when.bin_prefix, f"{where}.bin_prefix", _BIN_PREFIX.fullmatch, "1 to 8 digits")
    _check_values(when.funding, f"{where}.funding", FUNDING.__contains__, "one of credit, debit, prepaid")
    _check_values(when.customer_segment, f"{where}.customer_segment", _TOKEN.fullmatch, name)
    amount = when.amount
    if amount is not None:
        if amount.gte is None and amount.lt is None:
            raise DocumentError("an amount range needs gte, lt or both", f"{where}.amount")
        if amount.gte is not None and amount.lt is not None and amount.gte >= amount.lt:
            raise DocumentError(f"lt ({amount.lt}) must be above gte ({amount.gte})", f"{where}.amount.lt")
    for key in when.metadata or {}:
        if not _METADATA_KEY.fullmatch(key):
            raise DocumentError(f"metadata key {key!r} must be 1-40 of A-Z, a-z, 0-9, '_.:-'", f"{where}.metadata")


# --- encoding -------------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def to_builtins(document: RoutingDocument) -> dict[str, Any]:
    """Return the document as JSON-ready builtins (absent conditions omitted, settings in full)."""
    # Through JSON so that tuples come back as lists, exactly what a client would see.
    return msgspec.json.decode(_encoder.encode(document))


def encode_document(document: RoutingDocument) -> bytes:
    """Return the document as JSON bytes, the form it is stored in."""
    return _encoder.encode(document)


def implied_default(accounts: Sequence[str]) -> RoutingDocument:
    """The document of a merchant without a config (version 0): priority over its accounts."""
    return RoutingDocument(default=DefaultTarget(strategy="priority", candidates=tuple(accounts)))


# --- rollout --------------------------------------------------------------------------------------


def rollout_bucket(sticky_key: str, version: int) -> int:
    """Return the shopper's bucket 0..99 for a version: the same in every process and restart.

    The version is part of the hash so that each canary samples a fresh set of shoppers; within
    one version a shopper always lands in the same bucket (``bucket < percent`` takes the canary).
    """
    digest = hashlib.blake2b(f"{version}:{sticky_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


# --- matching -------------------------------------------------------------------------------------

# Dimensions matched by table look-up: (facts attribute, When attribute).
_SET_DIMENSIONS = (
    ("currency", "currency"),
    ("payment_method", "payment_method"),
    ("card_country", "card_country"),
    ("ip_country", "ip_country"),
    ("card_brand", "card_brand"),
    ("funding", "funding"),
    ("customer_segment", "customer_segment"),
)


def _target(strategy: str, candidates: tuple[str, ...], weights: Mapping[str, int] | None) -> Target:
    compiled = tuple(weights[account] for account in candidates) if weights is not None else None
    return Target(strategy=strategy, candidates=candidates, weights=compiled)


class _Residual(msgspec.Struct, frozen=True):
    """Conditions not in a look-up table: amount range, BIN prefixes, metadata."""

    gte: int | None
    lt: int | None
    bin_prefixes: tuple[str, ...] | None
    metadata: tuple[tuple[str, frozenset[str]], ...] | None

    def accepts(self, facts: PaymentFacts) -> bool:
        if self.gte is not None and facts.amount < self.gte:
            return False
        if self.lt is not None and facts.amount >= self.lt:
            return False
        if self.bin_prefixes is not None:
            card_bin = facts.bin
            if card_bin is None or not card_bin.startswith(self.bin_prefixes):
                return False
        if self.metadata is not None:
            values = facts.metadata
            for key, allowed in self.metadata:
                if values.get(key) not in allowed:
                    return False
        return True


def _residual(when: When) -> _Residual | None:
    amount = when.amount
    if amount is None and when.bin_prefix is None and when.metadata is None:
        return None
    return _Residual(
        gte=amount.gte if amount else None,
        lt=amount.lt if amount else None,
        bin_prefixes=when.bin_prefix,
        metadata=tuple((key, frozenset(values)) for key, values in when.metadata.items()) if when.metadata else None,
    )


class CompiledRouting:
    """A document prepared for matching; build once per version and share it."""

    __slots__ = ("_all", "_default", "_dimensions", "_matches", "_residuals", "document")

    def __init__(self, document: RoutingDocument) -> None:
        """Precompute the look-up tables of ``document``.

        Args:
            document: A validated document.
        """
        self.document = document
        rules = document.rules
        self._all = (1 << len(rules)) - 1
        self._matches = tuple(
            Match(rule=rule.name, target=_target(rule.strategy, rule.candidates, rule.weights)) for rule in rules
        )
        self._residuals = tuple(_residual(rule.when) for rule in rules)
        default = document.default
        self._default = Match(rule=None, target=_target(default.strategy, default.candidates, default.weights))
        dimensions: list[tuple[str, dict[str, int], int]] = []
        for fact, field in _SET_DIMENSIONS:
            wildcard = 0
            table: dict[str, int] = {}
            for position, rule in enumerate(rules):
                values = getattr(rule.when, field)
                if values is None:
                    wildcard |= 1 << position
                else:
                    for value in values:
                        table[value] = table.get(value, 0) | 1 << position
            if wildcard == self._all:
                continue  # no rule constrains this dimension
            # A listed value is accepted by its rules and by every rule that does not care.
            dimensions.append((fact, {value: mask | wildcard for value, mask in table.items()}, wildcard))
        self._dimensions = tuple(dimensions)

    @property
    def default(self) -> Match:
        """The match of a payment no rule takes."""
        return self._default

    def match(self, facts: PaymentFacts) -> Match:
        """Return the first rule that matches ``facts``, or the default."""
        mask = self._all
        for fact, table, wildcard in self._dimensions:
            mask &= table.get(getattr(facts, fact), wildcard)
            if not mask:
                return self._default
        residuals = self._residuals
        while mask:
            lowest = mask & -mask
            position = lowest.bit_length() - 1
            residual = residuals[position]
            if residual is None or residual.accepts(facts):
                return self._matches[position]
            mask ^= lowest
        return self._default

    def targets(self) -> tuple[Match, ...]:
        """Every rule's match followed by the default's, in document order."""
        return (*self._matches, self._default)
