"""A merchant's risk rule document: its schema, validation, JSON encoding and the platform defaults.

A document is ``{"rules": [rule, ...]}``. Every rule has ``name``, ``kind``, the kind's parameters,
``action`` (``allow | review | decline | request_3ds``), ``score`` (0-100, default 0) and ``mode``
(``enforce`` or ``shadow``, default ``enforce``). Kinds:

- ``velocity``: ``measure`` (count | amount | distinct_cards | declines), ``per`` (card | email | ip
  | device | customer), ``window`` (1m | 1h | 24h), ``threshold``; fires when the measure over the
  window, the payment being decided counted, exceeds the threshold. ``declines`` counts the earlier
  declined attempts (the payment being decided has no outcome yet).
- ``amount``: ``threshold`` in minor units, optional ``currency``; fires when the amount exceeds it
  (converted to ``currency`` with ``fastpath.fx`` when that is given and differs).
- ``amount_anomaly``: ``factor``, ``min_history`` (3), ``per`` (customer), ``window`` (24h); fires
  when the amount exceeds ``factor`` times the mean of the key's earlier payments in the window,
  once there are at least ``min_history`` of them.
- ``geo_mismatch``: fires when the IP country and the card (BIN) country are both known and differ.
- ``country``: ``countries``, ``match_on`` (card, ip by default; customer too); fires on a match.
- ``sanctions``: optional ``min_score``; fires on a screening match (the screener applied its own
  threshold). ``decline`` declines with ``sanctions_hit``; ``review`` opens a review.

Platform defaults (reference 1.6, ``PLATFORM_DEFAULTS``) apply beneath every merchant document. A
merchant rule with a default's name replaces that default; ``{"name": <default>, "action":
"allow"}`` (no kind needed) disables it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from switch.money import is_known_currency

Action = Literal["allow", "review", "decline", "request_3ds"]
Mode = Literal["enforce", "shadow"]
Measure = Literal["count", "amount", "distinct_cards", "declines"]
PerKey = Literal["card", "email", "ip", "device", "customer"]
WindowName = Literal["1m", "1h", "24h"]
CountrySource = Literal["card", "ip", "customer"]

MAX_RULES = 200
MAX_COUNTRIES = 300
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_JSON_PATH = re.compile(r"`\$((?:\.[^.\[`]+|\[\d+\])*)`")
_FIELD_IN_MESSAGE = re.compile(r"field `([^`]+)`")

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
Score = Annotated[int, msgspec.Meta(ge=0, le=100)]
Minor = Annotated[int, msgspec.Meta(ge=0, le=10**15)]


class DocumentError(ValueError):
    """A risk rule document that does not validate.

    Attributes:
        message: A sentence for humans.
        param: Dotted path of the offending field (``rules.0.threshold``), or None for the body.
    """

    def __init__(self, message: str, param: str | None) -> None:
        """Build the error; see the class attributes."""
        super().__init__(message)
        self.message = message
        self.param = param


class _Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    """Fields every rule kind has."""

    name: Name
    action: Action
    score: Score = 0
    mode: Mode = "enforce"


class VelocityRule(_Rule, tag="velocity"):
    """A measure over a key and a window above a threshold."""

    measure: Measure
    per: PerKey
    window: WindowName
    threshold: Minor


class AmountRule(_Rule, tag="amount"):
    """The payment's amount above a threshold (minor units of ``currency`` or the payment's own)."""

    threshold: Minor
    currency: str | None = None


class AmountAnomalyRule(_Rule, tag="amount_anomaly"):
    """The amount far above the key's usual amount in the window."""

    factor: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    min_history: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 3
    per: Literal["customer", "card", "email"] = "customer"
    window: WindowName = "24h"


class GeoMismatchRule(_Rule, tag="geo_mismatch"):
    """IP country differs from the card's country."""


class CountryRule(_Rule, tag="country"):
    """The card, IP (or customer) country is one of ``countries``."""

    countries: list[str]
    match_on: list[CountrySource] = msgspec.field(default_factory=lambda: ["card", "ip"])


class SanctionsRule(_Rule, tag="sanctions"):
    """A sanctions screening match (with at least ``min_score`` when given)."""

    min_score: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None


class DisabledDefault(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``{"name": <platform default>, "action": "allow"}``: turns that default off."""

    name: Name
    action: Literal["allow"] = "allow"


Rule = VelocityRule | AmountRule | AmountAnomalyRule | GeoMismatchRule | CountryRule | SanctionsRule
KINDS: tuple[str, ...] = ("velocity", "amount", "amount_anomaly", "geo_mismatch", "country", "sanctions")


class RiskRules(msgspec.Struct, frozen=True, kw_only=True):
    """A validated merchant document. Build it with ``parse_rules``, never by decoding into it."""

    rules: list[Rule | DisabledDefault] = msgspec.field(default_factory=list)


class CompiledRules(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """The rules in force for one merchant: platform defaults not overridden, then its own rules.

    ``disabled`` names the defaults the merchant turned off. ``engine.evaluate`` turns the rules
    into checks on first use and keeps them on the instance (hence ``dict=True``): build one per
    document version and reuse it.
    """

    rules: tuple[Rule, ...]
    disabled: tuple[str, ...] = ()


def _param_from_validation(prefix: str, error: msgspec.ValidationError) -> tuple[str, str]:
    """Turn msgspec's ``... - at `$.a[0].b``` into a message and a dotted path under ``prefix``."""
    text = str(error)
    message, _, _ = text.partition(" - at `")
    parts = [prefix] if prefix else []
    found = _JSON_PATH.search(text)
    if found:
        for piece in re.findall(r"\.([^.\[]+)|\[(\d+)\]", found.group(1)):
            parts.append(piece[0] or piece[1])
    # Missing and unknown fields are reported at their object; the field itself is the param.
    if message.startswith(("Object missing required field", "Object contains unknown field")):
        field = _FIELD_IN_MESSAGE.search(message)
        if field:
            parts.append(field.group(1))
    return message, ".".join(parts)


def _check_rule(rule: Rule, at: str) -> None:
    """Checks that msgspec's schema cannot express."""
    if isinstance(rule, VelocityRule) and rule.measure == "distinct_cards" and rule.per == "card":
        raise DocumentError("distinct_cards per card is always 1; use per ip, email, device or customer", f"{at}.per")
    if isinstance(rule, AmountRule) and rule.currency is not None and not is_known_currency(rule.currency):
        raise DocumentError(f"unknown currency {rule.currency!r}", f"{at}.currency")
    if isinstance(rule, CountryRule):
        if not rule.countries:
            raise DocumentError("countries must list at least one ISO 3166 alpha-2 code", f"{at}.countries")
        if len(rule.countries) > MAX_COUNTRIES:
            raise DocumentError(f"countries lists more than {MAX_COUNTRIES} codes", f"{at}.countries")
        for index, country in enumerate(rule.countries):
            if not _COUNTRY.match(country):
                raise DocumentError(
                    f"{country!r} is not an upper-case ISO 3166 alpha-2 code", f"{at}.countries.{index}"
                )
        if not rule.match_on:
            raise DocumentError("match_on must name card, ip or customer", f"{at}.match_on")
    if isinstance(rule, SanctionsRule) and rule.action == "request_3ds":
        raise DocumentError("a sanctions rule declines, reviews or is disabled with allow", f"{at}.action")


def _parse_rule(raw: Any, at: str) -> Rule | DisabledDefault:
    if not isinstance(raw, Mapping):
        raise DocumentError("a rule must be an object", at)
    if "kind" not in raw:
        if raw.get("action") == "allow" and raw.get("name") in DEFAULT_NAMES:
            try:
                return msgspec.convert(raw, DisabledDefault)
            except msgspec.ValidationError as exc:
                message, param = _param_from_validation(at, exc)
                raise DocumentError(message, param) from None
        raise DocumentError(
            "missing kind (only a platform default can be disabled without one, with action allow)", f"{at}.kind"
        )
    kind = raw["kind"]
    if kind not in KINDS:
        raise DocumentError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}", f"{at}.kind")
    try:
        rule: Rule = msgspec.convert(raw, Rule)
    except msgspec.ValidationError as exc:
        message, param = _param_from_validation(at, exc)
        raise DocumentError(message, param) from None
    _check_rule(rule, at)
    return rule


def parse_rules(raw: bytes | str | Mapping[str, Any]) -> RiskRules:
    """Validate a merchant's rule document.

    Args:
        raw: The JSON body, or its decoded object.

    Returns:
        The document.

    Raises:
        DocumentError: With ``param`` the dotted path of the first offending field.
    """
    if isinstance(raw, bytes | str):
        try:
            raw = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise DocumentError(f"the document is not valid JSON: {exc}", None) from None
    if not isinstance(raw, Mapping):
        raise DocumentError("the document must be an object with a rules list", None)
    for key in raw:
        if key != "rules":
            raise DocumentError(f"unknown field {key!r}", str(key))
    if "rules" not in raw:
        raise DocumentError("missing rules", "rules")
    items = raw["rules"]
    if not isinstance(items, list):
        raise DocumentError("rules must be a list", "rules")
    if len(items) > MAX_RULES:
        raise DocumentError(f"at most {MAX_RULES} rules", "rules")
    parsed: list[Rule | DisabledDefault] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        rule = _parse_rule(item, f"rules.{index}")
        if rule.name in seen:
            raise DocumentError(f"duplicate rule name {rule.name!r}", f"rules.{index}.name")
        seen.add(rule.name)
        parsed.append(rule)
    return RiskRules(rules=parsed)


def encode_rules(document: RiskRules) -> bytes:
    """JSON of a document, every parameter explicit; ``parse_rules`` reads it back unchanged."""
    return msgspec.json.encode(document)


def rules_to_builtins(document: RiskRules) -> dict[str, Any]:
    """The document as plain dicts and lists, for embedding in a larger response."""
    return msgspec.to_builtins(document)


# Reference 1.6. Names are stable: merchants disable a default by naming it.
PLATFORM_DEFAULTS: tuple[Rule, ...] = (
    VelocityRule(
        name="platform.card_testing_ip",
        measure="distinct_cards",
        per="ip",
        window="1h",
        threshold=3,
        action="decline",
        score=80,
    ),
    VelocityRule(
        name="platform.distinct_cards_email",
        measure="distinct_cards",
        per="email",
        window="24h",
        threshold=3,
        action="review",
        score=40,
    ),
    VelocityRule(
        name="platform.distinct_cards_device",
        measure="distinct_cards",
        per="device",
        window="24h",
        threshold=3,
        action="review",
        score=40,
    ),
    VelocityRule(
        name="platform.card_attempts_1m",
        measure="count",
        per="card",
        window="1m",
        threshold=3,
        action="decline",
        score=70,
    ),
    VelocityRule(
        name="platform.card_attempts_1h",
        measure="count",
        per="card",
        window="1h",
        threshold=5,
        action="decline",
        score=70,
    ),
    # ">= 3" and ">= 5" in the reference: the rule fires above its threshold.
    VelocityRule(
        name="platform.card_declines_1h",
        measure="declines",
        per="card",
        window="1h",
        threshold=2,
        action="decline",
        score=80,
    ),
    VelocityRule(
        name="platform.ip_declines_1h",
        measure="declines",
        per="ip",
        window="1h",
        threshold=4,
        action="decline",
        score=70,
    ),
    # USD 2,000 in minor units of whatever the counters sum (the payment currency's).
    VelocityRule(
        name="platform.card_amount_24h",
        measure="amount",
        per="card",
        window="24h",
        threshold=200_000,
        action="review",
        score=30,
    ),
    GeoMismatchRule(name="platform.geo_mismatch", action="review", score=30),
    # Comprehensively sanctioned jurisdictions; compliance owns this list.
    CountryRule(name="platform.sanctioned_countries", countries=["CU", "IR", "KP", "SY"], action="decline", score=100),
    AmountAnomalyRule(name="platform.amount_anomaly", factor=10, min_history=3, action="review", score=30),
    # A fuzzy name match needs a person's eyes before anything is refused.
    SanctionsRule(name="platform.sanctions", action="review", score=90),
)
DEFAULT_NAMES: frozenset[str] = frozenset(rule.name for rule in PLATFORM_DEFAULTS)


def effective_rules(document: RiskRules | None) -> CompiledRules:
    """The rules in force for a merchant: the platform defaults beneath its own document.

    A merchant rule named like a default replaces it (an ``allow`` entry without a kind just
    disables it); the remaining defaults come first, then the merchant's rules in its order.

    Args:
        document: The merchant's document, or None when it has none.

    Returns:
        The rules to compile and evaluate.
    """
    own = document.rules if document is not None else []
    named = {rule.name for rule in own}
    disabled = tuple(
        rule.name
        for rule in own
        if rule.name in DEFAULT_NAMES and (isinstance(rule, DisabledDefault) or rule.action == "allow")
    )
    rules = [rule for rule in PLATFORM_DEFAULTS if rule.name not in named]
    rules.extend(rule for rule in own if not isinstance(rule, DisabledDefault))
    return CompiledRules(rules=tuple(rules), disabled=disabled)


__all__ = [
    "DEFAULT_NAMES",
    "KINDS",
    "PLATFORM_DEFAULTS",
    "AmountAnomalyRule",
    "AmountRule",
    "CompiledRules",
    "CountryRule",
    "DisabledDefault",
    "DocumentError",
    "GeoMismatchRule",
    "RiskRules",
    "Rule",
    "SanctionsRule",
    "VelocityRule",
    "effective_rules",
    "encode_rules",
    "parse_rules",
    "rules_to_builtins",
]
