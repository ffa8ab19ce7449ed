"""A hypothesis state machine that follows the served OpenAPI links against a live switch.

Why not ``schema.as_state_machine()``: its rules take their inputs from hypothesis bundles that are
filled only by responses with the link's status code, so which rules hypothesis may choose depends
on what the live server answered. The same choices then lead to different draws from one test case
to the next (a payment declined by a velocity rule, a capture refused because an earlier step
voided it), and hypothesis stops with ``FlakyStrategyDefinition`` ("while selecting a rule to
run ... a bundle that was unexpectedly empty"). Schemathesis' own runner swallows that error and
restarts; a test cannot.

Here every rule draws the same things whatever the server says: schemathesis' strategy for the
operation's case (positive or negative mode) and a few integers. What the server answered only
decides which real payment an index picks from the pools below, never what is drawn. The payment
ids are taken from the responses through the document's own links (``$response.body#/id``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.api.helpers import card, fresh_card_number

CREATE = ("POST", "/v1/payments")
CAPTURE = ("POST", "/v1/payments/{payment_id}/capture")
VOID = ("POST", "/v1/payments/{payment_id}/void")
REFUND = ("POST", "/v1/payments/{payment_id}/refunds")
READ = ("GET", "/v1/payments/{payment_id}")
READ_REFUND = ("GET", "/v1/refunds/{refund_id}")
CHECKS = [not_a_server_error, response_schema_conformance]
CAPTURABLE = {"authorized", "partially_captured"}
# Currencies the sandbox settles; the generated ones are mostly not ISO 4217 codes at all.
CURRENCIES = ["EUR", "USD", "GBP", "JPY", "SGD"]
INDEX = st.integers(min_value=0, max_value=2**16)


@dataclass
class RunLog:
    """What a run did: statuses, links followed with a real id, and check failures."""

    statuses: list[int] = field(default_factory=list)
    followed: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def conforms(case: Any, response: Any) -> None:
    """No 5xx, and the body matches the documented schema of its status.

    Success bodies are checked where the document names a component (a Struct) for them. Inline
    success schemas are left out: Litestar's placeholder for handlers answering pre-encoded bytes (a
    bare string), and ``/health/ready``'s ``oneOf: [{}, {...}]``, which every object matches twice.
    """
    checks = CHECKS if response.status_code >= 400 or _documented(case, response.status_code) else CHECKS[:1]
    case.validate_response(response, checks=checks)
    content_type = response.headers.get("content-type") or [""]
    if response.status_code >= 400 and content_type[0].startswith("application/json"):
        assert set(response.json()) == {"error"}, response.text[:300]


def _documented(case: Any, status: int) -> bool:
    answer = case.operation.definition.raw.get("responses", {}).get(str(status), {})
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    return isinstance(schema, dict) and "$ref" in schema


def follow(link: dict[str, Any], body: Any) -> dict[str, Any]:
    """The target parameters of an OpenAPI ``link`` given the JSON ``body`` of its source response."""
    values = {}
    for name, expression in link["parameters"].items():
        prefix = "$response.body#"
        assert expression.startswith(prefix), expression
        value = body
        for token in expression[len(prefix) :].split("/")[1:]:
            value = value[token.replace("~1", "/").replace("~0", "~")]
        values[name] = value
    return values


def switch_machine(schema: Any, base: str, headers: dict[str, str]) -> tuple[type[RuleBasedStateMachine], RunLog]:
    """Build the state machine class for the live switch at ``base`` and the log it fills.

    Args:
        schema: The schemathesis schema of the served document (with its links).
        base: The switch's base URL.
        headers: Headers of every request (authentication).
    """
    operations = {(op.method.upper(), op.path): op for op in (r.ok() for r in schema.get_all_operations())}
    log = RunLog()

    def cases(key: tuple[str, str]) -> st.SearchStrategy[tuple[bool, Any]]:
        operation = operations[key]
        positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
        negative = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
        # Mostly valid requests, so that the state machine moves; a quarter made invalid on purpose.
        return st.one_of(*[positive.map(lambda case: (True, case))] * 3, negative.map(lambda case: (False, case)))

    def links(key: tuple[str, str], status: int) -> dict[str, Any]:
        raw = operations[key].definition.raw["responses"][str(status)]
        return raw.get("links", {})

    class Switch(RuleBasedStateMachine):
        """Payments, captures, voids and refunds on one live switch, chosen by hypothesis."""

        def __init__(self) -> None:
            super().__init__()
            # id -> the last body the switch answered for it
            self.payments: dict[str, dict[str, Any]] = {}
            self.refunds: list[dict[str, Any]] = []
            # id -> the operation and status whose response last named it: the source of its links
            self.sources: dict[str, tuple[tuple[str, str], int]] = {}

        def _call(self, case: Any) -> Any:
            response = case.call(base_url=base, headers=headers)
            log.statuses.append(response.status_code)
            try:
                conforms(case, response)
            # Collected, not raised: a live server cannot replay a run for hypothesis to shrink. Several
            # failed checks arrive as a FailureGroup, a BaseExceptionGroup that `Exception` misses.
            except (Exception, FailureGroup) as exc:
                detail = response.text[:300]
                log.failures.append(f"{case.method} {case.path} -> {response.status_code}: {exc} {detail}")
            return response

        def _remember(self, key: tuple[str, str], response: Any) -> dict[str, Any] | None:
            if 200 <= response.status_code < 300 and response.json().get("object") == "payment":
                payment = response.json()
                self.payments[payment["id"]] = payment
                if key != READ:
                    self.sources[payment["id"]] = (key, response.status_code)
                return payment
            return None

        def _pick(self, index: int, wanted: Any) -> dict[str, Any] | None:
            pool = [payment for payment in self.payments.values() if wanted(payment)]
            return pool[index % len(pool)] if pool else None

        def _authorize(self, index: int) -> dict[str, Any] | None:
            """A fresh manual authorization (no draws), when no payment in the pool fits."""
            case = operations[CREATE].Case(body=_approvable_body(1000 + index % 50_000, "EUR", "manual"))
            return self._remember(CREATE, self._call(case))

        def _captured(self, index: int) -> dict[str, Any] | None:
            """A fresh authorization captured in full (no draws)."""
            authorized = self._authorize(index)
            if authorized is None:
                return None
            capture = operations[CAPTURE].Case(body={})
            self._target(CAPTURE, capture, authorized, "capture")
            return self._remember(CAPTURE, self._call(capture))

        def _refunded(self, index: int) -> dict[str, Any] | None:
            """A refund of part of a fresh captured payment (no draws)."""
            payment = self._captured(index)
            if payment is None:
                return None
            refund = operations[REFUND].Case(body={"amount": 1 + index % payment["amount"]})
            self._target(REFUND, refund, payment, "refund")
            response = self._call(refund)
            if response.status_code != 201:
                return None
            self.refunds.append(response.json())
            return response.json()

        def _target(self, key: tuple[str, str], case: Any, payment: dict[str, Any] | None, link: str) -> None:
            if payment is None:
                return
            source, status = self.sources[payment["id"]]
            case.path_parameters = {**(case.path_parameters or {}), **follow(links(source, status)[link], payment)}
            log.followed[f"{source[1].rsplit('/', 1)[-1].replace('payments', 'create')}->{link}"] += 1

        @rule(
            drawn=cases(CREATE),
            amount=st.integers(min_value=100, max_value=500_000),
            currency=st.sampled_from(CURRENCIES),
            capture=st.sampled_from(["manual", "manual", "automatic"]),
            approvable=st.integers(min_value=0, max_value=3),
        )
        def create(self, drawn: tuple[bool, Any], amount: int, currency: str, capture: str, approvable: int) -> None:
            valid, case = drawn
            if valid and approvable and isinstance(case.body, dict):
                # Generated card numbers are almost never Luhn-valid; risk declines a card seen more
                # than 3 times a minute, so each approvable payment gets a new one.
                extra = {k: v for k, v in case.body.items() if k in ("reference", "metadata")}
                case.body = {**_approvable_body(amount, currency, capture), **extra}
            self._remember(CREATE, self._call(case))

        @rule(drawn=cases(CAPTURE), index=INDEX, whole=st.booleans(), real=st.integers(min_value=0, max_value=9))
        def capture(self, drawn: tuple[bool, Any], index: int, whole: bool, real: int) -> None:
            valid, case = drawn
            payment = None
            if real:
                payment = self._pick(index, lambda p: p["status"] in CAPTURABLE) or self._authorize(index)
            if valid and payment is not None:
                capturable = payment["amount"] - payment["amount_captured"]
                case.body = {} if whole else {"amount": 1 + index % max(capturable, 1)}
            self._target(CAPTURE, case, payment, "capture")
            self._remember(CAPTURE, self._call(case))

        @rule(drawn=cases(VOID), index=INDEX, real=st.integers(min_value=0, max_value=9))
        def void(self, drawn: tuple[bool, Any], index: int, real: int) -> None:
            _, case = drawn
            payment = None
            if real:
                payment = self._pick(index, lambda p: p["status"] == "authorized") or self._authorize(index)
            self._target(VOID, case, payment, "void")
            self._remember(VOID, self._call(case))

        @rule(drawn=cases(REFUND), index=INDEX, whole=st.booleans(), real=st.integers(min_value=0, max_value=9))
        def refund(self, drawn: tuple[bool, Any], index: int, whole: bool, real: int) -> None:
            valid, case = drawn
            payment = None
            if real:
                payment = self._pick(index, lambda p: p["amount_captured"] > p["amount_refunded"]) or self._captured(
                    index
                )
            if valid and payment is not None:
                refundable = payment["amount_captured"] - payment["amount_refunded"]
                body = case.body if isinstance(case.body, dict) else {}
                body.pop("amount", None)
                case.body = body if whole else {**body, "amount": 1 + index % max(refundable, 1)}
            self._target(REFUND, case, payment, "refund")
            response = self._call(case)
            if response.status_code == 201:
                self.refunds.append(response.json())
                if payment is not None:
                    self._remember(
                        READ, self._call(operations[READ].Case(path_parameters={"payment_id": payment["id"]}))
                    )

        @rule(drawn=cases(READ), index=INDEX)
        def read(self, drawn: tuple[bool, Any], index: int) -> None:
            _, case = drawn
            payment = self._pick(index, lambda p: True)
            self._target(READ, case, payment, "read")
            self._remember(READ, self._call(case))

        @rule(drawn=cases(READ_REFUND), index=INDEX, real=st.integers(min_value=0, max_value=9))
        def read_refund(self, drawn: tuple[bool, Any], index: int, real: int) -> None:
            _, case = drawn
            refund = None
            if real:
                refund = self.refunds[index % len(self.refunds)] if self.refunds else self._refunded(index)
            if refund is not None:
                case.path_parameters = follow(links(REFUND, 201)["read"], refund)
                log.followed["refund->read"] += 1
            self._call(case)

    return Switch, log


def _approvable_body(amount: int, currency: str, capture: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency, "capture": capture, "payment_method": card(fresh_card_number())}
